FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY reasonq ./reasonq
RUN pip install --no-cache-dir . && useradd --create-home reasonq
USER reasonq
EXPOSE 8000
CMD ["reasonq", "api", "--host", "0.0.0.0", "--port", "8000"]
