# blockserve container: builds with the same scripts as the README and CI, runs the server.
# CPU image; a CUDA variant (nvidia/cuda base) comes with the deployment issue.
FROM debian:12 AS build
WORKDIR /src
COPY . /src
RUN bash scripts/install-deps.sh && CUDA=OFF bash scripts/build.sh \
    -DBLOCKSERVE_BUILD_TESTS=OFF

FROM debian:12 AS runtime
# Runtime libraries only (the -dev packages stay in the build stage).
RUN apt-get update && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libsentencepiece0 libhwy1 libopenblas0-pthread \
      libabsl20220623 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --create-home blockserve
COPY --from=build /src/build/bin /opt/blockserve/bin
COPY --from=build /src/build/lib /opt/blockserve/lib
USER blockserve
ENTRYPOINT ["/opt/blockserve/bin/blockserve-selfcheck"]
