import type * as grpc from '@grpc/grpc-js';
import type { StreamAccessLogsMessage__Output } from '../generated/envoy/service/accesslog/v3/StreamAccessLogsMessage.js';
import { logger } from '../observability/log.js';
import { messageType, TO_OBJECT } from '../proto/root.js';
import type { TrafficAggregator } from './aggregator.js';
import { trafficMetrics } from './metrics.js';

/**
 * The access-log sink: envoy.service.accesslog.v3.AccessLogService on the control plane's gRPC server.
 * Envoy streams batches of HTTP access-log entries (one stream per Envoy worker and log name); each entry
 * is counted by the aggregator and then dropped. TCP entries are ignored: models are served over HTTP.
 */

const log = logger('als');

export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';

type AlsCall = grpc.ServerReadableStream<StreamAccessLogsMessage__Output, Uint8Array>;

/** The gRPC definition of AccessLogService (client streaming, empty response). */
export function accessLogServiceDefinition(): grpc.ServiceDefinition {
  const request = messageType('envoy.service.accesslog.v3.StreamAccessLogsMessage');
  const method: grpc.MethodDefinition<StreamAccessLogsMessage__Output, Uint8Array> = {
    path: `/${ACCESS_LOG_SERVICE}/StreamAccessLogs`,
    requestStream: true,
    responseStream: false,
    requestSerialize: () => {
      throw new Error('server-side definition');
    },
    requestDeserialize: (buf: Buffer) => request.toObject(request.decode(buf), TO_OBJECT) as StreamAccessLogsMessage__Output,
    // StreamAccessLogsResponse has no fields: its encoding is empty.
    responseSerialize: (value: Uint8Array) => Buffer.from(value),
    responseDeserialize: (buf: Buffer) => buf,
  };
  return { StreamAccessLogs: method };
}

/** Adds the access-log service to a gRPC server, counting every HTTP entry into `aggregator`. */
export function registerAccessLogService(server: grpc.Server, aggregator: TrafficAggregator): void {
  server.addService(accessLogServiceDefinition(), {
    StreamAccessLogs: (call: AlsCall, callback: grpc.sendUnaryData<Uint8Array>) => handleStream(call, callback, aggregator),
  });
}

function handleStream(call: AlsCall, callback: grpc.sendUnaryData<Uint8Array>, aggregator: TrafficAggregator): void {
  trafficMetrics.streams.inc();
  // The identifier comes only on a stream's first message.
  let source = { node: '', logName: '' };
  let done = false;
  const finish = (reason: string, err?: Error): void => {
    if (done) return;
    done = true;
    trafficMetrics.streams.dec();
    log.debug({ node: source.node, logName: source.logName, peer: call.getPeer(), reason }, 'access-log stream closed');
    if (!err) callback(null, new Uint8Array(0));
  };
  call.on('data', (msg: StreamAccessLogsMessage__Output) => {
    if (msg.identifier) {
      source = { node: msg.identifier.node?.id ?? '', logName: msg.identifier.log_name };
      log.debug({ node: source.node, logName: source.logName, peer: call.getPeer() }, 'access-log stream opened');
    }
    for (const entry of msg.http_logs?.log_entry ?? []) aggregator.recordEntry(entry);
  });
  call.on('end', () => finish('client ended the stream'));
  call.on('error', (err: Error) => {
    log.warn({ err, node: source.node, logName: source.logName }, 'access-log stream failed');
    finish(`error: ${err.message}`, err);
  });
  call.on('cancelled', () => finish('cancelled', new Error('cancelled')));
}
