/**
 * replicas (issue 16): what `replicas: 1` costs on three memcached servers, measured side by side
 * with `replicas: 0` on the same servers, 64 concurrent requests on a ~1 KB JSON session.
 *
 * - write: tie + read 3 + change 1 + untie. replicas 0: 1 `gets` + 1 `cas`. replicas 1, no server
 *   suspect (src/stores/memcached-suspects.ts): the read is one `mg` on the key's own server; the
 *   write an `ms` at the cas there, with an `mg` of the replica's version alongside, then an `ms`
 *   on the replica.
 * - read: tie + read 3 + untie (nothing changed, nothing written): 1 `gets`, or 1 `mg`.
 */
import { lib } from './lib/tied.js'
import { sessionData, type BenchSession, type Loaded } from './lib/data.js'
import { touch } from './lib/clients.js'
import { startMemcached } from './lib/memcached.js'
import { consume, emit, fmt, sideBySide, verdict, type Summary } from './lib/measure.js'

const { closeStores, tieSession, untie } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const WORKERS = 64
const KEYS = 256
const nodes = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
const servers = nodes.map((n) => n.address)
const configs = { 0: { servers, replicas: 0 }, 1: { servers, replicas: 1 } }

/** Sessions made through each configuration (so the replicated ones have their copies). */
const ids: Record<0 | 1, string[]> = { 0: [], 1: [] }
for (const r of [0, 1] as const) {
  for (let i = 0; i < KEYS; i++) {
    const s = (await tieSession<BenchSession>(undefined, configs[r])) as Loaded
    for (const [k, v] of Object.entries(sessionData(s._session_id, i))) if (k !== '_session_id') (s as Record<string, unknown>)[k] = v
    ids[r].push(s._session_id)
    await untie(s)
  }
}

let n = 0
const write = (r: 0 | 1) => async (w: number) => {
  const s = (await tieSession<BenchSession>(ids[r][(w + n++) % KEYS]!, configs[r])) as Loaded
  touch(s, n)
  await untie(s)
}
const read = (r: 0 | 1) => async (w: number) => {
  const s = (await tieSession<BenchSession>(ids[r][(w + n++) % KEYS]!, configs[r])) as Loaded
  consume(s.uid)
  consume(s.email)
  consume(s.prefs.theme)
  await untie(s)
}

// rounds: a multiple of the 4 contestants, so that each runs first in a round as often as the others
const opts = { rounds: QUICK ? 4 : 8, sliceMs: QUICK ? 300 : 700, concurrency: WORKERS }
const results = await sideBySide(
  [
    { name: 'write r0', op: write(0) },
    { name: 'write r1', op: write(1) },
    { name: 'read r0', op: read(0) },
    { name: 'read r1', op: read(1) },
  ],
  opts,
)
const figure = (s: Summary) => `${fmt.int(s.perSec)} req/s, p50 ${fmt.us(s.p50)}, p99 ${fmt.us(s.p99)}`
const bench = `replicas (3 servers, ${WORKERS} concurrent)`
for (const kind of ['write', 'read'] as const) {
  const r0 = results.get(`${kind} r0`)!
  const r1 = results.get(`${kind} r1`)!
  const ratio = r1.perSec / r0.perSec
  emit({ bench, name: `${kind}, replicas: 0`, figure: figure(r0), ratio: 'baseline' })
  emit({
    bench,
    name: `${kind}, replicas: 1`,
    figure: figure(r1),
    ratio: `${fmt.x(ratio)} replicas 0's throughput`,
    target: kind === 'write' ? '>= 0.6x' : '>= 0.9x (unchanged)',
    result: verdict(ratio >= (kind === 'write' ? 0.6 : 0.9)),
  })
}

await closeStores()
await Promise.all(nodes.map((node) => node.stop()))
