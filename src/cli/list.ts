/**
 * `list [--where path=value]`: every session of the store, found by walking its keys.
 */
import { isDeepStrictEqual } from 'node:util'
import { INDEX_AT, isSessionError } from '../index.js'
import { expectArgs, type Command } from './context.js'
import { CliError, EXIT } from './errors.js'
import { isSessionId } from './ids.js'
import { memcachedCommand, memcachedStats, replyLine, versionAtLeast } from './memcached-raw.js'
import { humanBytes } from './output.js'
import { ID_FIELD, UTIME_FIELD, getPath, parseAssignment, showValue, type Assignment } from './paths.js'
import { requestTimeout, type OpenStore } from './store.js'

/** Sessions read at once. */
const CONCURRENCY = 32
/** memcached got `lru_crawler metadump` in 1.4.31. */
const METADUMP_SINCE = '1.4.31'

/** One listed session. */
interface Listed {
  id: string
  user: unknown
  size: number
  data: Record<string, unknown>
}

/** `list`: ids, users, sizes and top-level keys of every session, filtered by --where. */
export const list: Command = async (ctx) => {
  expectArgs(ctx, 0, 0, 'no arguments (filter with --where path=value)')
  const filters = ctx.where.map((w) => parseAssignment(w, 'list', false))
  const open = ctx.open()
  const { namespace, principal } = open.config
  const keys = await sessionKeys(open)
  const sessions: Listed[] = []
  // items of another application in the namespace (another client's flags, data that is not
  // one of our sessions): counted and left alone, never a reason to stop or to delete them
  let foreign = 0
  for (let i = 0; i < keys.length; i += CONCURRENCY) {
    await Promise.all(
      keys.slice(i, i + CONCURRENCY).map(async (id) => {
        let entry
        try {
          entry = await open.store.get(namespace + id, { consistent: true })
        } catch (err) {
          if (!isSessionError(err, 'ERR_CORRUPT')) throw err
          foreign++
          return
        }
        if (entry === undefined || (typeof entry.value === 'string' && isIndexValue(entry.value))) return // gone meanwhile, or a user's latest-session key
        const data = sessionData(String(entry.value)) // a Storable (Perl) session counts as foreign here: JSON only
        if (data?.[ID_FIELD] !== id) {
          foreign++
          return
        }
        if (!filters.every((f) => matches(getPath(data, f.segments), f))) return
        sessions.push({ id, user: data[principal], size: Buffer.byteLength(entry.value), data })
      }),
    )
  }
  sessions.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  if (ctx.out.json) {
    ctx.out.print({ sessions: sessions.map((s) => ({ ...s, user: s.user ?? null })), foreign })
    return EXIT.ok
  }
  const hidden = new Set([ID_FIELD, UTIME_FIELD, principal, `${principal}_MD5`, INDEX_AT])
  const rows = sessions.map((s) => [
    s.id,
    s.user === undefined ? '-' : showValue(s.user),
    s.size < 1024 ? `${s.size} B` : humanBytes(s.size),
    truncate(
      Object.keys(s.data)
        .filter((k) => !hidden.has(k))
        .join(',') || '-',
      50,
    ),
  ])
  if (rows.length > 0) ctx.out.table(['ID', 'USER', 'SIZE', 'KEYS'], rows, [2])
  const filtered = filters.length > 0 ? ` matching ${filters.map((f) => `${f.path}=${f.raw}`).join(' and ')}` : ''
  ctx.out.line(ctx.out.paint(`${sessions.length} session${sessions.length === 1 ? '' : 's'}${filtered}`, 'dim'))
  if (foreign > 0) {
    const what = `not a tied-session session (${foreign} item${foreign === 1 ? '' : 's'} in this namespace, left as they are)`
    ctx.out.line(ctx.out.paint(what, 'dim'))
  }
  return EXIT.ok
}

/**
 * The keys that may be sessions, namespace removed. The principal index's list keys
 * (`<md5>:sessions`) and lock keys do not have the shape of an id; its latest-session keys
 * (`<md5>`) do, and are told apart by their value, a plain id rather than a JSON object.
 */
async function sessionKeys(open: OpenStore): Promise<string[]> {
  const { store } = open
  const { namespace } = open.config
  if (store.keys === undefined) throw new CliError('this store cannot list its keys', EXIT.unavailable)
  const keys: string[] = []
  try {
    for await (const key of store.keys(namespace)) {
      const bare = key.slice(namespace.length)
      if (isSessionId(bare)) keys.push(bare)
    }
  } catch (err) {
    if (open.kind === 'memcached' && isSessionError(err, 'ERR_STORE_UNAVAILABLE'))
      throw await whyNoList(open.store.servers, err, requestTimeout(open.config))
    throw err
  }
  return keys
}

/**
 * A server that does not list its keys is either down (the error as it is) or refuses
 * `lru_crawler metadump`: too old (< 1.4.31), or started with -X (--disable-dumping) or
 * -o no_lru_crawler. Asking for a slab class no memcached has tells which, at no cost: a server
 * that allows metadump answers "BADCLASS", one that refuses answers ERROR or CLIENT_ERROR and why.
 */
async function whyNoList(servers: readonly string[], err: unknown, timeout: number): Promise<unknown> {
  const probes = await Promise.all(
    servers.map(async (server) => {
      try {
        const { version = '0' } = await memcachedStats(server, timeout)
        const reply = replyLine(await memcachedCommand(server, 'lru_crawler metadump 999', 'dump', timeout))
        return { server, version, reply }
      } catch {
        return undefined
      }
    }),
  )
  if (probes.some((p) => p === undefined)) return err // down: ERR_STORE_UNAVAILABLE says so
  const refusing = probes.find((p) => /^(ERROR|CLIENT_ERROR)/.test(p!.reply))
  if (refusing === undefined) return err
  const { server, version, reply } = refusing
  const why = versionAtLeast(version, METADUMP_SINCE)
    ? `list walks memcached with lru_crawler metadump, which a server started with -X (--disable-dumping) or -o no_lru_crawler refuses`
    : `memcached before ${METADUMP_SINCE} has no lru_crawler metadump, which list walks memcached with`
  const message = `cannot list sessions: memcached ${server} (version ${version}) refuses lru_crawler metadump ("${reply}"); ${why}; look sessions up by user with find <user> instead`
  return new CliError(message, EXIT.unavailable, { cause: err })
}

/** The values the principal index keeps under keys shaped like ids: a user's latest session id, or '' (src/principal.ts). */
const isIndexValue = (text: string) => text === '' || /^[0-9a-f]{32}$/.test(text)

/** The data of a stored session, or undefined when the value is not a JSON object (an index key, say). */
function sessionData(value: string): Record<string, unknown> | undefined {
  try {
    const data: unknown = JSON.parse(value)
    return typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** `--where path=value`: the value as JSON, or a string equal to the text given. */
function matches(actual: unknown, filter: Assignment): boolean {
  return isDeepStrictEqual(actual, filter.value) || (typeof actual === 'string' && actual === filter.raw)
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}
