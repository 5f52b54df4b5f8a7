/**
 * The live keys of one memcached server, from `lru_crawler metadump` on a socket of its own.
 *
 * `lru_crawler metadump hash` (memcached >= 1.6.9) walks the hash table, so it sees every item;
 * `metadump all` walks the LRUs and misses items that move between them during the walk (on
 * 1.6.18, recently read keys were missing from about 7% of dumps; `hash` missed none in 240).
 * A server that answers `hash` with an error (older ones say BADCLASS) is asked with `all`, and
 * a crawl already running (BUSY) is waited for, a bounded number of times.
 */
import { SessionError } from '../errors.js'
import { pause } from './lock.js'
import { CLOSED, memcachedRequest } from './memcached-request.js'

/** Attempts while the server answers BUSY (another metadump or crawl runs), and the first pause; pauses double up to BUSY_MAX_MS. */
const BUSY_ATTEMPTS = 12
const BUSY_FIRST_MS = 20
const BUSY_MAX_MS = 500

/** Lists the live keys of memcached servers; `close` aborts the listings in flight. */
export class KeyLister {
  private readonly aborts = new AbortController()
  /** Servers that answered `metadump hash` with an error: asked with `all`. */
  private readonly noHash = new Set<string>()

  constructor(private readonly timeout: number) {}

  /** The keys of `server` that have not expired, in no order. Rejects with `ERR_STORE_UNAVAILABLE`. */
  async keys(server: string): Promise<string[]> {
    const fail = (why: string, cause?: unknown) =>
      new SessionError(
        'ERR_STORE_UNAVAILABLE',
        `memcached ${server} did not list its keys: ${why}`,
        cause === undefined ? undefined : { cause },
      )
    let wait = BUSY_FIRST_MS
    for (let attempt = 1; ; attempt++) {
      if (this.aborts.signal.aborted) throw new SessionError('ERR_STORE_UNAVAILABLE', 'the memcached store is closed; create a new one')
      const mode = this.noHash.has(server) ? 'all' : 'hash'
      let reply
      try {
        reply = await memcachedRequest(server, `lru_crawler metadump ${mode}`, 'dump', {
          timeout: this.timeout,
          signal: this.aborts.signal,
        })
      } catch (err) {
        // twemproxy closes the connection on every command it does not proxy, lru_crawler included
        if ((err as Error).message === CLOSED)
          throw fail(
            `it closed the connection on "lru_crawler metadump"; a proxy (twemproxy) cannot list keys: list them on the memcached servers behind it`,
            err,
          )
        throw fail((err as Error).message, err)
      }
      if (reply.kind === 'dump') {
        const now = Date.now() / 1000
        return reply.entries.filter(({ exp }) => exp === -1 || exp > now).map(({ key }) => key)
      }
      if (reply.kind !== 'refused') throw fail('it answered out of step' + ('line' in reply ? ` ("${reply.line}")` : ''))
      if (reply.line.startsWith('BUSY')) {
        if (attempt >= BUSY_ATTEMPTS) throw fail(`it answered "${reply.line}" ${attempt} times; try again later`)
        await pause(wait, undefined)
        wait = Math.min(wait * 2, BUSY_MAX_MS)
        continue
      }
      if (mode === 'hash') {
        this.noHash.add(server) // before 1.6.9: no hash walk (BADCLASS); -X: `all` is refused too, and says so
        continue
      }
      throw fail(`it answered "${reply.line}"`)
    }
  }

  /** Aborts the listings in flight; later ones reject. */
  close(): void {
    this.aborts.abort()
  }
}
