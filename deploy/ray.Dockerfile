# The image of the Ray cluster that deploy/k8s/ray-job.yaml runs `semsearch index build --ray` on:
# the runtime image (semsearch and the ONNX artifacts, at the same paths on every node) plus Ray
# Data, and wget, which KubeRay's default probes of the Ray head and workers call. From the
# repository root, after `docker compose build`:
#   docker build -f deploy/ray.Dockerfile -t semsearch:ray .
FROM semsearch:runtime
USER root
RUN apt-get update && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir "ray[data]>=2.60"
USER semsearch
# The user has no home directory; Ray keeps its session files under /tmp.
ENV HOME=/tmp
