# Flowgate's image: one image for every flowgate command (serve, filters, validate, render, bootstrap).
#   docker build -t flowgate .
#   docker run --rm flowgate serve --help
# The container runs `node dist/src/cli/main.js COMMAND ...`; give the command and its options as arguments.

# Build stage: full dev dependencies, the types generated from the protos, then tsc.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/gen-types.mjs scripts/gen-types.mjs
COPY protos protos
COPY src src
COPY filters filters
COPY bench bench
RUN npm run build && npm prune --omit=dev

# Runtime stage: node, the compiled JavaScript, production node_modules, and the protos, which are read at
# start-up (src/proto/root.ts finds protos/ next to dist/ and the Envoy protos in @grpc/grpc-js-xds).
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# package.json carries "type": "module", without which Node would not load dist/ as ES modules.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY protos ./protos
COPY bin ./bin
# The node image's unprivileged user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# 18000 xDS and 18090 admin (flowgate serve); 18081 gRPC and 18091 admin (flowgate filters).
EXPOSE 18000 18090 18081 18091
# No HEALTHCHECK here: serve and filters answer on different admin ports, so docker-compose.yml and the
# Kubernetes manifests probe each service's own /healthz or /readyz.
# bin/flowgate, as on a host: the filter service on its own entry point, each process with its V8 heap flags
# (FLOWGATE_SERVE_NODE_FLAGS, FLOWGATE_FILTERS_NODE_FLAGS).
ENTRYPOINT ["bin/flowgate"]
CMD ["--help"]
