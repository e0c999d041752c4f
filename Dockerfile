# AuxTelWEP CSC image: python 3.11 with the package and its dependencies from the registries.
FROM python:3.11-slim
WORKDIR /opt/ts_auxtelwep
COPY . .
RUN pip install --no-cache-dir .
ENV LSST_DDS_DOMAIN_ID=0
ENTRYPOINT ["run_auxtelwep"]
