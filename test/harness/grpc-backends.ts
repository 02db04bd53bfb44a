import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import { repoRoot } from './venv.js';

/**
 * Test model servers that speak the Open Inference Protocol over gRPC (test/fixtures/protos/inference.proto),
 * each answering with its own name so a test can count which backend served every call, however the call
 * was routed (proxyless xDS client, Envoy).
 */

/** The fully qualified service name, as clients address it. */
export const INFERENCE_SERVICE = 'inference.GRPCInferenceService';

/** Loader options shared by backends and Node clients: field names exactly as in the proto. */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, defaults: true, arrays: true };

/** The inference.proto package definition (loaded once). */
export const inferenceDefinition = protoLoader.loadSync(join(repoRoot, 'test/fixtures/protos/inference.proto'), LOADER_OPTIONS);

/** The client constructor for inference.GRPCInferenceService. */
export const InferenceClient = (
  grpc.loadPackageDefinition(inferenceDefinition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }
).inference.GRPCInferenceService;

export interface TensorContents {
  fp32_contents?: number[];
  bytes_contents?: Buffer[];
}
export interface InferTensor {
  name: string;
  datatype: string;
  shape: number[];
  contents?: TensorContents;
}
export interface ModelInferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  inputs?: InferTensor[];
  outputs?: { name: string }[];
}
export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: InferTensor[];
}
export interface ServerMetadataResponse {
  name: string;
  version: string;
  extensions: string[];
}

/** The output tensor (BYTES, one element) in which a backend names itself. */
export const BACKEND_OUTPUT = 'backend';

export interface InferenceBackend {
  readonly name: string;
  readonly version: string;
  readonly port: number;
  /** Calls this backend answered, per method name. */
  readonly calls: Readonly<Record<string, number>>;
  /**
   * The client addresses (ip:port) calls came from: one per TCP connection, so a set that stays the same
   * across two batches of calls proves no client reconnected in between.
   */
  readonly peers: ReadonlySet<string>;
  /** Stops at once, cutting open calls. */
  stop(): void;
}

/**
 * Starts an OIP gRPC server on a free loopback port. ServerMetadata answers `{ name, version }`;
 * ModelInfer echoes model name and id, reports `version` as model_version, and returns two outputs: a
 * BYTES tensor `backend` holding the backend's name and an FP32 tensor `sum` with the sum of every FP32
 * input element (so a test sees its inputs really arrived).
 */
export async function startInferenceBackend(name: string, version = name): Promise<InferenceBackend> {
  const calls: Record<string, number> = {};
  const peers = new Set<string>();
  const count = (method: string, call: { getPeer(): string }): void => {
    calls[method] = (calls[method] ?? 0) + 1;
    peers.add(call.getPeer());
  };
  const server = new grpc.Server();
  server.addService(InferenceClient.service, {
    ServerLive: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<{ live: boolean }>) => {
      count('ServerLive', call);
      cb(null, { live: true });
    },
    ServerMetadata: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<ServerMetadataResponse>) => {
      count('ServerMetadata', call);
      cb(null, { name, version, extensions: [] });
    },
    ModelInfer: (call: grpc.ServerUnaryCall<ModelInferRequest, ModelInferResponse>, cb: grpc.sendUnaryData<ModelInferResponse>) => {
      count('ModelInfer', call);
      const req = call.request;
      if (!req.model_name) {
        cb({ code: grpc.status.INVALID_ARGUMENT, details: 'model_name is required' });
        return;
      }
      const sum = (req.inputs ?? []).flatMap((t) => t.contents?.fp32_contents ?? []).reduce((a, b) => a + b, 0);
      cb(null, {
        model_name: req.model_name,
        model_version: version,
        id: req.id ?? '',
        outputs: [
          { name: BACKEND_OUTPUT, datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(name)] } },
          { name: 'sum', datatype: 'FP32', shape: [1], contents: { fp32_contents: [sum] } },
        ],
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { name, version, port, calls, peers, stop: () => server.forceShutdown() };
}
