// The contract between the service daemon and each protocol it serves.
import type { Logger } from '../log.js';
import type { Backend } from './backend.js';
import type { ServiceNodeConfig } from './config.js';
import type { EventLog } from './events.js';

export interface RoleContext {
  config: ServiceNodeConfig;
  backend: Backend;
  events: EventLog;
  logger: Logger;
}

export interface RunningRole {
  name: string;
  /** The port actually bound (useful when the config asked for 0). */
  port: number;
  close(): Promise<void>;
}

export type StartRole = (ctx: RoleContext) => Promise<RunningRole>;
