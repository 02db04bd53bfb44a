/** The admin API's answers, as far as the console reads them (see src/admin/*.ts for the server side). */

export interface VersionPoint {
  version: string;
  requests: number;
  errorRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RolloutEvent {
  at: number;
  decision: string;
  phase: string;
  step: number;
  weight: number;
  reason?: string;
  canaryVersion: string;
  stableVersion: string;
  check?: { verdict: string; summary: string; canary: VersionPoint; stable: VersionPoint };
  by: string;
}

export interface Rollout {
  model: string;
  canaryVersion: string | null;
  stableVersion: string | null;
  idle: string | null;
  phase: string;
  step: number;
  steps: number[];
  weight: number;
  failedChecks: number;
  threshold: number;
  reason: string | null;
  pendingCommand: string | null;
  nextCheckAt: string | null;
  intervalMs: number;
  events?: RolloutEvent[];
}

export interface RolloutList {
  lease: { holder: string | null; thisReplica: string | null; held: boolean };
  source: string;
  writable: boolean;
  rollouts: Rollout[];
}

export interface NodeStatus {
  node: string;
  group: string;
  stream: number;
  service: string;
  transport: string;
  types: { type: string; lastAck: { version: string } | null; lastNack: { version: string; detail: string; at: string } | null }[];
}

export interface LiveVersion {
  version: string;
  aliases: string[];
  weight: number;
  role: string;
}

export interface GatewayIR {
  models: { name: string; registeredModel: string; live: LiveVersion[]; keptLastLive: boolean }[];
  alerts: { model: string; code: string; message: string }[];
}

export interface Rejection {
  at: string;
  issues: { file: string; line: number; col: number; path: string; message: string }[];
}
