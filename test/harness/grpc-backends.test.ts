import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  BACKEND_OUTPUT,
  InferenceClient,
  startInferenceBackend,
  type InferenceBackend,
  type ModelInferRequest,
  type ModelInferResponse,
  type ServerMetadataResponse,
} from './grpc-backends.js';

/** The OIP gRPC test backend answers the three methods of inference.proto, naming itself in each answer. */

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void;
type Client = grpc.Client & {
  ServerLive: Unary<object, { live: boolean }>;
  ServerMetadata: Unary<object, ServerMetadataResponse>;
  ModelInfer: Unary<ModelInferRequest, ModelInferResponse>;
};

const call = <Req, Res>(method: Unary<Req, Res>, client: Client, req: Req): Promise<Res> =>
  new Promise((resolve, reject) => method.call(client, req, (err, res) => (err ? reject(err) : resolve(res as Res))));

describe('OIP gRPC test backend', () => {
  let backend: InferenceBackend;
  let client: Client;

  beforeAll(async () => {
    backend = await startInferenceBackend('fraud-v1', '1');
    client = new InferenceClient(`127.0.0.1:${backend.port}`, grpc.credentials.createInsecure()) as unknown as Client;
  });
  afterAll(() => {
    client?.close();
    backend?.stop();
  });

  test('ServerLive and ServerMetadata name the backend', async () => {
    expect(await call(client.ServerLive, client, {})).toEqual({ live: true });
    expect(await call(client.ServerMetadata, client, {})).toEqual({ name: 'fraud-v1', version: '1', extensions: [] });
  });

  test('ModelInfer sums the FP32 inputs and names the backend; a call without model_name is refused', async () => {
    const res = await call(client.ModelInfer, client, {
      model_name: 'fraud-detector',
      id: 'req-7',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3], contents: { fp32_contents: [1.5, 2, 4] } }],
    });
    expect(res.model_name).toBe('fraud-detector');
    expect(res.model_version).toBe('1');
    expect(res.id).toBe('req-7');
    const byName = Object.fromEntries(res.outputs.map((o) => [o.name, o]));
    expect(byName[BACKEND_OUTPUT]?.contents?.bytes_contents?.map((b) => b.toString())).toEqual(['fraud-v1']);
    expect(byName.sum?.contents?.fp32_contents).toEqual([7.5]);
    await expect(call(client.ModelInfer, client, { model_name: '' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(backend.calls.ModelInfer).toBe(2);
    expect(backend.peers.size).toBe(1);
  });
});
