"""Sending hexapod corrections to ATAOS, at most once per result.

`CorrectionSender.prepare` refuses a correction measured on images taken or received before M2 finished
moving for the last offset (they show M2 before or during that move: sending it would correct twice), one
that is not finite, and one that the limits clip to nothing; it applies the gains and limits
(`closed_loop.plan_step`, with the total already sent in the journal's current epoch, i.e. since the CSC
was enabled) and claims the correction in the journal; only then does `CorrectionSender.send` write the
ATAOS ``offset`` command. The outcome is journaled: APPLIED on CMD_COMPLETE; FAILED when it surely did not
act (ATAOS refused it with CMD_FAILED or CMD_NOPERM, or no ATAOS was discovered so it was never written: it
may be sent again); UNCERTAIN when the outcome is unknown (timeout, abort, cancellation, ATAOS's own time
limit, which fails the command after the offset entered its model, an unexpected error while sending: never
sent again).

ATAOS's acknowledgement does not mean that M2 has moved: it defers the move while the shutter is open. When
it has is learnt from ATAOS's hexapod move events (`m2_moves`: the end of a successful move started after
the acknowledgement), or assumed ``settle_timeout_s`` after it if ATAOS reports none
(`CorrectionSender.settle`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .closed_loop import correction_significance, plan_step
from .config import ApplyConfig
from .errors import InputError
from .instrument import HexapodState
from .journal import CorrectionState, Journal
from .m2_moves import M2MoveWatcher
from .sal import AckError, AckTimeoutError, CommandNotSentError, ExpectedError, SalRetCode

__all__ = ["OFFSET_DTYPE", "CorrectionSender", "NothingSignificantError", "as_sent"]


class NothingSignificantError(ExpectedError):
    """The closed loop leaves M2 where it is: the correction is within its noise."""


_DEFINITE_REFUSALS = (SalRetCode.CMD_FAILED, SalRetCode.CMD_NOPERM)


#: Type of the ATAOS ``offset`` fields (IDL ``float`` in ts_xml).
OFFSET_DTYPE = np.float32


def as_sent(offset: HexapodState, max_total: ArrayLike = 0.0) -> HexapodState:
    """``offset`` as the ATAOS ``offset`` command carries it (`OFFSET_DTYPE`), rounded towards zero.

    The journal then records, and the totals add up, exactly what ATAOS receives; rounding towards zero
    keeps a step that the limits cut to the room left within that room. That rounding leaves a residue of
    room below the resolution of ``max_total`` (per axis x, y, z, u, v) in that type; a component not
    larger than it is that residue, not a correction, and is sent as 0 (else M2 would be "moved" by
    nanometres and the limit never reported as reached).

    Parameters
    ----------
    offset : `HexapodState`
        Offset to send (mm, mm, mm, deg, deg).
    max_total : array-like, optional
        ``max_total`` limit per axis x, y, z, u, v (or one for all); 0 sends every nonzero component.
    """
    values = offset.as_array()
    sent = values.astype(OFFSET_DTYPE)
    outward = np.abs(sent.astype(float)) > np.abs(values)
    sent[outward] = np.nextafter(sent[outward], OFFSET_DTYPE(0))
    residue = 2 * np.spacing(np.abs(np.broadcast_to(max_total, values.shape)).astype(OFFSET_DTYPE))
    sent[np.abs(sent) <= residue] = 0
    return HexapodState.from_array(sent.astype(float))


class CorrectionSender:
    """Send corrections through an ATAOS remote (see the module docstring).

    Parameters
    ----------
    journal : `journal.Journal`
    ataos : `sal.Remote`
        Remote of ATAOS with its ``offset`` command.
    config : `config.ApplyConfig`
        Gains, limits, the command's time limit and how long to wait for M2 to move.
    log : `logging.Logger`
    moves : `m2_moves.M2MoveWatcher`
        ATAOS's hexapod moves, as the CSC received them.
    """

    def __init__(
        self, *, journal: Journal, ataos: Any, config: ApplyConfig, log: logging.Logger, moves: M2MoveWatcher
    ) -> None:
        self.journal = journal
        self.ataos = ataos
        self.config = config
        self.log = log
        self.moves = moves

    def prepare(self, key: str, *, automatic: bool = False) -> HexapodState:
        """Compute the offset to send for triplet ``key`` and claim it; return the offset (mm, deg).

        Parameters
        ----------
        key : `str`
            Journal key of the triplet.
        automatic : `bool`, optional
            True for the closed loop: images taken before the loop started (or the CSC was enabled) are
            refused as well, so that startClosedLoop never applies what was measured before it (images
            announced while the CSC was down, say); and a correction not more than ``min_significance``
            sigma from zero as a whole (`closed_loop.correction_significance`) is not sent
            (`NothingSignificantError`). issueCorrection sends what was measured.

        Raises
        ------
        ExpectedError
            If there is no correction for ``key``, it was measured before the last offset, it is not
            finite, the limits leave nothing of it, or it cannot be claimed (already being sent, sent,
            uncertain or superseded).
        """
        record = self.journal.correction(key)
        if record is None:
            raise ExpectedError(f"no correction for triplet {key}")
        stale = self._measured_before(key, automatic=automatic)
        if stale:
            raise ExpectedError(f"the correction of group {record.group_id} is not sent: {stale}")
        if automatic:
            significance = correction_significance(record.raw, self._sigma(key))
            if significance <= self.config.min_significance:
                raise NothingSignificantError(
                    f"the correction of group {record.group_id} is {significance:.1f} sigma from zero, not "
                    f"more than min_significance={self.config.min_significance:g}: M2 is not moved"
                )
        try:
            step = plan_step(
                record.raw,
                gains=self.config.gains.as_array(),
                max_step=self.config.max_step.as_array(),
                max_total=self.config.max_total.as_array(),
                total=self.journal.total_applied(),
            )
        except InputError as exc:
            raise ExpectedError(f"the correction of group {record.group_id}: {exc}") from exc
        offset = as_sent(step.offset, self.config.max_total.as_array())
        if step.message:
            self.log.warning(f"group {record.group_id}: {step.message}")
            if not offset.as_array().any():
                raise ExpectedError(
                    f"the correction of group {record.group_id} is not sent: {step.message}, nothing left "
                    "(max_total counts what was sent since the CSC was enabled)"
                )
        if not self.journal.claim_correction(key, offset):
            current = self.journal.correction(key)
            state = current.state.name if current is not None else "missing"
            raise ExpectedError(f"the correction of group {record.group_id} is {state}: it is not sent again")
        return offset

    def _sigma(self, key: str) -> HexapodState:
        """The 1-sigma error of the correction of triplet ``key`` (zeros, i.e. unknown, if not journaled)."""
        triplet = self.journal.triplet(key)
        sigma = triplet.result.get("correction_sigma") if triplet is not None else None
        return HexapodState() if sigma is None else HexapodState.from_array(sigma)

    def settle(self, now: float | None = None) -> None:
        """Journal when M2 finished moving for each offset sent that is not yet known to have settled.

        That is the end of the first successful hexapod move ATAOS started after acknowledging the offset
        (`M2MoveWatcher.completed_after`; for an offset whose outcome is uncertain, the first received after
        it was given up on). In flight, an offset is never settled. One answered ``settle_timeout_s`` ago
        without such a move, while ATAOS is ENABLED, is taken as settled then, provisionally (a warning):
        ATAOS moves nothing for an offset within its tolerance, and one acknowledged as a long exposure began
        moves when it ends; a move reported within twice that time replaces the assumption.

        Parameters
        ----------
        now : `float`, optional
            The current time (``time.time``; default: now).
        """
        now = time.time() if now is None else now
        timeout = self.config.settle_timeout_s
        for move in self.journal.moves(unsettled=True):
            if move.state == CorrectionState.APPLYING:
                continue
            if move.acked_tai is not None:
                after = {"stamp": move.acked_tai}
            else:  # uncertain (or acknowledged before ATAOS's stamp was journaled)
                after = {"received": move.answered}
            moved = self.moves.completed_after(**after, now=now)
            window = move.answered + 2 * timeout
            if moved is not None and (
                not move.provisional or (move.settled is not None and move.settled < moved <= window)
            ):
                self.log.info(f"M2 finished moving for the offset of group {move.group_id}: {_utc(moved)}")
                self.journal.mark_settled(move.triplet_key, moved)
            elif move.provisional:
                # The assumption stands: the first move ended before it, or too late to be the deferred one.
                if moved is not None or now > window:
                    self.journal.mark_settled(move.triplet_key, move.settled or now)
            elif (
                now >= move.answered + timeout
                and self.moves.ataos_enabled
                and not self.moves.moving_after(**after, now=now)
            ):
                assumed = move.answered + timeout
                self.log.warning(
                    f"ATAOS reported no hexapod move after the offset of group {move.group_id} within "
                    f"settle_timeout_s={timeout:g} s: taken as over at {_utc(assumed)} until one is reported"
                )
                self.journal.mark_settled(move.triplet_key, assumed, provisional=True)

    def _measured_before(self, key: str, *, automatic: bool) -> str:
        """Why the images of triplet ``key`` may show M2 before or during the last move for an offset, or
        for the closed loop before its start ('' if they do not).

        An image predates a time if its exposure started before it (header time) or the CSC first saw it
        before it (journal), whichever is earlier; without a start time in its header, if the CSC first saw
        it less than its exposure time after it (the exposure had begun by then).
        """
        self.settle()
        last = self.journal.last_move()
        moved, what = None, ""
        if last is not None:
            if last.settled is None:
                return (
                    f"M2 may still be moving for the offset of group {last.group_id} (sent at "
                    f"{_utc(last.sent)}): ATAOS has not yet reported the end of a hexapod move that "
                    "includes it (hexapodCorrectionCompleted)"
                )
            moved, what = last.settled, f"the last offset to M2 (group {last.group_id}) was in effect"
        if automatic:
            started = self.journal.loop_start_time()
            if moved is None or moved < started:
                moved, what = started, "the closed loop started (or the CSC was enabled)"
        triplet = self.journal.triplet(key)
        if moved is None or triplet is None:
            return ""
        early = []
        for info in triplet.triplet.images:
            record = self.journal.image(info.obsid)
            seen = record.created if record is not None else None
            if seen is not None and info.exposure_start is None:
                seen -= info.exposure_time_s or 0.0  # first seen at its readout's end
            times = [t for t in (info.exposure_start, seen) if t is not None]
            if times and min(times) < moved:
                early.append(info.obsid)
        if not early:
            return ""
        images = ", ".join(early)
        return f"{images} came before {what} ({_utc(moved)}): it measures M2 as it was before or moving"

    async def send(self, key: str, offset: HexapodState) -> None:
        """Write ATAOS ``offset`` for a claimed correction and journal the outcome.

        Whatever goes wrong, the correction leaves APPLYING: FAILED if the command surely did not act
        (ATAOS refused it, or it was never written because no ATAOS was discovered), UNCERTAIN if it may
        have (no answer in time, abort, cancellation, or any other error once sending began: that may come
        after the write).

        Parameters
        ----------
        key : `str`
            Journal key of the triplet whose correction was claimed (`Journal.claim_correction`).
        offset : `HexapodState`
            The offset to send, as claimed (mm, mm, mm, deg, deg).

        Raises
        ------
        ExpectedError
            If ATAOS did not acknowledge it as done (the message says whether it may have been applied).
        """
        try:
            ack = await self.ataos.cmd_offset.set_start(
                x=offset.x,
                y=offset.y,
                z=offset.z,
                u=offset.u,
                v=offset.v,
                w=0.0,
                m1=0.0,
                m2=0.0,
                timeout=self.config.apply_timeout_s,
            )
        except asyncio.CancelledError:
            self.journal.finish_correction(
                key, CorrectionState.UNCERTAIN, message="cancelled while in flight"
            )
            raise
        except CommandNotSentError as exc:
            # Not in the totals and not a move of M2 (FAILED): later triplets are not refused for it.
            message = f"not sent to ATAOS (no ATAOS found: not applied): {exc}"
            self.journal.finish_correction(key, CorrectionState.FAILED, message=message)
            raise ExpectedError(message) from exc
        except AckError as exc:
            # ATAOS's own time limit (cmd_timeout) fails the command after it added the offset to its model.
            refused = not isinstance(exc, AckTimeoutError) and exc.ackcmd.ack in _DEFINITE_REFUSALS
            definite = refused and "timed out" not in str(exc.ackcmd.result).lower()
            state = CorrectionState.FAILED if definite else CorrectionState.UNCERTAIN
            outcome = "refused it" if definite else "did not confirm it (it may have been applied)"
            message = f"ATAOS {outcome}: {exc}"
            self.journal.finish_correction(key, state, message=message)
            raise ExpectedError(message) from exc
        except Exception as exc:
            # A bug or a DDS failure: nothing says whether the command went out, so it counts as sent.
            self.log.exception(f"sending the correction of {key} to ATAOS failed unexpectedly")
            message = f"sending to ATAOS failed unexpectedly (it may have been applied): {exc!r}"
            self.journal.finish_correction(key, CorrectionState.UNCERTAIN, message=message)
            raise ExpectedError(message) from exc
        self.journal.finish_correction(key, CorrectionState.APPLIED)
        # Moves ATAOS starts after this stamp include the offset (m2_moves).
        self.journal.mark_acked(key, ack.private_sndStamp)


def _utc(when: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(when))
