# One image for the Dataflow Flex Template launcher and for the workers
# (--sdk_container_image): both jobs, their pinned dependencies, Beam's SDK harness.
# Build and run it with the gcloud commands in README.md, "Deploying on Dataflow".
ARG BEAM_VERSION=2.77.0
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest AS launcher

FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

# The launcher binary that runs FLEX_TEMPLATE_PYTHON_PY_FILE to submit the job.
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /template

# Dependencies first, in their own layer: rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY setup.py README.md ./
COPY pipelines/ pipelines/
COPY transforms/ transforms/
COPY schemas/ schemas/
COPY tools/ tools/
COPY sample/ sample/
# The project itself, without resolving anything again; pip check fails the build
# if the lock and the project's requirements disagree.
RUN pip install --no-cache-dir --no-deps . && pip check

# Which job a template runs is set per template spec (--env FLEX_TEMPLATE_JOB=...).
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipelines/flex_template.py
# Everything is installed: the launcher must not install requirements or a setup file.
ENV PIP_NO_DEPS=True

ENTRYPOINT ["/opt/apache/beam/boot"]
