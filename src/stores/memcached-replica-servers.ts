/**
 * The servers of a replicated pool (./memcached-replicas.ts), one wire client each: which are
 * down, whether they speak meta (checked once each), and a look at one copy of a key (its stamp
 * and cas, with its value when asked). A server that fails counts as down for RETRY_MS, as its
 * connection refuses it.
 */
import { SessionError } from '../errors.js'
import { RETRY_MS } from './memcached-connection.js'
import { copyOf, OWN_BITS, type Look } from './memcached-copies.js'
import { WireClient } from './memcached-wire.js'

/** The servers of a replicated pool: see the module comment. */
export class ReplicaServers {
  readonly clients = new Map<string, WireClient>()
  /** Server -> until when (performance.now()) it counts as down after a failure. */
  private readonly downUntil = new Map<string, number>()
  /** The errors that say a server lacks meta commands: a configuration error, never taken for a down copy. */
  private readonly noMeta = new WeakSet<object>()
  /** Servers that answered the meta probe. */
  private readonly speaksMeta = new Set<string>()

  constructor(servers: readonly string[], requestTimeout: number) {
    // a copy's flags carry its stamp above the value's own two bits: only those make it bytes
    for (const server of servers) this.clients.set(server, new WireClient([server], requestTimeout, undefined, 'auto', OWN_BITS))
  }

  /** Fails the calls in flight and every later one with `error`. */
  close(error: SessionError): void {
    for (const client of this.clients.values()) client.close(error)
  }

  /** Asks every server of `key` for its copy's stamp (and at index `valueAt`, its value), in parallel. */
  async lookAll(key: string, servers: string[], valueAt: number): Promise<Look[]> {
    const looks = await Promise.all(servers.map((server, i) => this.look(server, key, i === valueAt)))
    const failed = looks.filter((look) => look.state === 'failed')
    for (const f of failed) if (this.noMeta.has(f.error as object)) throw f.error
    if (failed.length === looks.length) throw this.noneAnswered(key, servers, failed[0]!.error)
    return looks
  }

  look(server: string, key: string, value: boolean): Promise<Look> {
    return this.on(server, (c) => c.metaGet(key, { value, cas: true, flags: true, ttl: true })).then(
      (item): Look => (item === undefined ? { state: 'miss' } : { state: 'hit', copy: copyOf(item) }),
      (error: unknown): Look => ({ state: 'failed', error }),
    )
  }

  /**
   * Runs `call` on `server`, first checking that it speaks meta. A server that fails counts as
   * down for RETRY_MS, as long as its connection refuses it; one that answers is up again. Not an
   * async function: on a server known to speak meta it is the call and one `.then` (a replicated
   * read is one such call).
   */
  on<T>(server: string, call: (client: WireClient) => Promise<T>): Promise<T> {
    // asked once per server: a server that answered meta once is not asked again
    if (!this.speaksMeta.has(server)) return this.probe(server).then(() => this.on(server, call))
    let calling: Promise<T>
    try {
      calling = call(this.clients.get(server)!)
    } catch (err) {
      calling = Promise.reject(err)
    }
    return calling.then(
      (result) => {
        this.downUntil.delete(server)
        return result
      },
      (err: unknown) => {
        throw this.failed(server, err)
      },
    )
  }

  /** Asks `server` whether it speaks meta (once it has said yes, {@link on} does not ask again). */
  private async probe(server: string): Promise<void> {
    try {
      if (!(await this.clients.get(server)!.supportsMeta(server))) throw this.metaMissing(server)
    } catch (err) {
      throw this.failed(server, err)
    }
    this.speaksMeta.add(server)
  }

  /** `err` from `server`: unless it says the server lacks meta commands, the server counts as down for RETRY_MS. */
  private failed(server: string, err: unknown): unknown {
    if (!this.noMeta.has(err as object)) this.downUntil.set(server, performance.now() + RETRY_MS)
    return err
  }

  /** The index of the first server of a key not known to be down (0 when all are). */
  firstUp(servers: readonly string[]): number {
    const now = performance.now()
    const up = servers.findIndex((server) => (this.downUntil.get(server) ?? 0) <= now)
    return up < 0 ? 0 : up
  }

  /** True for a failure that left the request unsent: nothing was applied. */
  unsent(err: unknown): boolean {
    return err instanceof SessionError && err.code === 'ERR_STORE_UNAVAILABLE' && !err.outcomeUnknown && !this.noMeta.has(err)
  }

  private metaMissing(server: string): SessionError {
    const error = new SessionError(
      'ERR_STORE_UNAVAILABLE',
      `memcached ${server} does not speak the meta protocol, which replicas needs on every server (memcached 1.6 and later do); ` +
        'behind a proxy such as twemproxy, leave replication to the proxy and set replicas: 0',
    )
    this.noMeta.add(error)
    return error
  }

  noneAnswered(key: string, servers: readonly string[], cause: unknown): SessionError {
    const said = cause instanceof Error ? cause.message.replace(/^tied-session: /, '') : String(cause)
    return new SessionError('ERR_STORE_UNAVAILABLE', `no server holding "${key}" answered (${servers.join(', ')}): ${said}`, {
      cause,
      outcomeUnknown: cause instanceof SessionError && cause.outcomeUnknown,
    })
  }
}
