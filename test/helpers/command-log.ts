/**
 * The command log of a test: the benchmark's counting relay (bench/lib/count-proxy.ts) in front
 * of a memcached server (or a proxy), keeping each command's first line as sent. For tests that
 * count what the store asks of the server.
 */
import type { ExecutionContext } from 'ava'
import { countProxy } from '../../bench/lib/count-proxy.js'

/** A relay started by {@link useCommandLog}. */
export interface CommandLog {
  /** `127.0.0.1:port`, for the store's `servers`. */
  readonly address: string
  /** The command lines sent so far ("gets k", "ms k 2 c T60"), oldest first. */
  lines(): string[]
  /** The command names sent so far ("gets", "ms"), oldest first. */
  verbs(): string[]
  /** Forgets what was logged (before the part of a test that counts). */
  clear(): void
  /** Connections the relay accepted. */
  connections(): number
}

/** Starts a relay to `target` (`host:port`) for one test; it and its sockets are closed in teardown. */
export async function useCommandLog<C>(t: ExecutionContext<C>, target: { host: string; port: number }): Promise<CommandLog> {
  const relay = await countProxy(target.port, { host: target.host, log: true })
  t.teardown(() => relay.close())
  return {
    address: relay.address,
    lines: relay.lines,
    verbs: () => relay.lines().map((line) => line.split(' ')[0]!),
    clear: relay.clearLines,
    connections: relay.connections,
  }
}
