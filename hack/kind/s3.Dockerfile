# A throwaway S3-compatible server for the kind dev loop only (moto's server mode, in memory): the
# bucket `citywok` exists from the start. Production uses Cloudflare R2 (docs/deploy.md).
ARG PYTHON_IMAGE=python:3.11-slim-trixie
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir --only-binary=:all: "moto[server]==5.2.1"
USER 10001:10001
ENV PORT=5000
EXPOSE 5000
CMD ["python", "-c", "import os, time, boto3; from moto.server import ThreadedMotoServer; port = int(os.environ['PORT']); ThreadedMotoServer(ip_address='0.0.0.0', port=port).start(); boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', region_name='us-east-1', aws_access_key_id='dev', aws_secret_access_key='dev').create_bucket(Bucket='citywok'); print(f's3 dev server on :{port}, bucket citywok', flush=True); time.sleep(10**9)"]
