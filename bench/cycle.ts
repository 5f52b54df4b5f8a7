/**
 * 1 cycle, 3 floor, 4 peers: one request's session work on a ~1 KB JSON session, through
 * tied-session and through the clients it is compared with, sequential and 64 concurrent,
 * side by side on one memcached.
 *
 * tied-session cycle, as a user writes it (default options, so autoSave is on; untie flushes):
 *   const s = await tieSession(id, { servers })   // 1 `gets` (the version for cas)
 *   s.uid; s.email; s.prefs.theme; s.cart.updated = n
 *   await untie(s)                                 // 1 `cas`
 *
 * "tied-session's store alone" does the same cycle on the memcachedStore a tie uses, without the
 * session (store.get, JSON.parse, the same reads and write, JSON.stringify, store.write with the
 * version read): it splits the distance to the floor into the store's part (wire client, key and
 * value checks, cas versions) and the session's (proxy, tracking, merge bases, autosave, index
 * and lifetime plans, the await layers of tieSession and untie).
 */
import { lib } from './lib/tied.js'
import { benchId, sessionText, type BenchSession, type Loaded } from './lib/data.js'
import { connectMemcachedClient, floorClient, memjsClient, rawClient, touch, type Client } from './lib/clients.js'
import { countPerOp, startMemcached } from './lib/memcached.js'
import { emit, fmt, sideBySide, verdict, type Contestant, type Summary } from './lib/measure.js'

const { closeStores, memcachedStore, save, tieSession, untie } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const ROUNDS = QUICK ? 2 : 10
const SLICE_MS = QUICK ? 300 : 600
const WORKERS = 64
/** `seq`, `c64` or both (the runner runs `seq` pinned to one core, `c64` free: see README). */
const MODES = (process.argv[2] ?? 'seq,c64').split(',') as Array<'seq' | 'c64'>

const server = await startMemcached()
const servers = [server.address]

const tied: Client = {
  seed: async () => undefined, // seeded by the raw client: same flag-0 JSON text
  async cycle(id, n) {
    const s = (await tieSession<BenchSession>(id, { servers })) as Loaded
    touch(s, n)
    await untie(s)
  },
  close: () => closeStores(),
}

const alone = memcachedStore({ servers })
const storeAlone: Client = {
  seed: async () => undefined, // seeded by the raw client
  async cycle(id, n) {
    const entry = await alone.get(id)
    const s = JSON.parse(String(entry!.value)) as BenchSession
    touch(s, n)
    const result = await alone.write(id, JSON.stringify(s), { mode: 'cas', version: entry!.version!, ttl: 86400 })
    if (result !== 'stored') throw new Error(`store alone: ${result}`)
  },
  close: () => alone.close(),
}

const clients: Array<[string, Client]> = [
  ['memcached (raw)', rawClient(server.address)],
  ['tied-session', tied],
  ["tied-session's store alone", storeAlone],
  ['floor (1 socket)', await floorClient(server.port)],
  ['memjs', memjsClient(server.address)],
  ['connect-memcached', connectMemcachedClient(server.address)],
]
const seeder = rawClient(server.address)
const keysOf = new Map<string, string[]>()
for (const [name, client] of clients) {
  const keys = Array.from({ length: WORKERS }, (_, w) => benchId(name, w))
  keysOf.set(name, keys)
  for (const [w, key] of keys.entries()) await (client === tied || client === storeAlone ? seeder : client).seed(key, sessionText(key, w))
}
await seeder.close()

let n = 0
const contestants = (mode: 'seq' | 'c64'): Contestant[] =>
  clients.map(([name, client]) => {
    const keys = keysOf.get(name)!
    let next = 0
    return {
      name,
      op: mode === 'seq' ? () => client.cycle(keys[next++ % WORKERS]!, n++) : (w) => client.cycle(keys[w]!, n++),
    }
  })

// Commands per cycle, from the server's stats (a separate, untimed pass).
const perCycle = new Map<string, string>()
for (const [name, client] of clients) {
  const keys = keysOf.get(name)!
  const [c] = await countPerOp([server], 50, (i) => client.cycle(keys[i % WORKERS]!, n++))
  perCycle.set(name, `${fmt.n(c!.get)} get + ${fmt.n(c!.store)} store${c!.other ? ` + ${fmt.n(c!.other)} other` : ''}`)
}

for (const mode of MODES) {
  const results = await sideBySide(contestants(mode), { rounds: ROUNDS, sliceMs: SLICE_MS, concurrency: mode === 'seq' ? 1 : WORKERS })
  const raw = results.get('memcached (raw)')!
  const bench = mode === 'seq' ? 'cycle, sequential' : `cycle, ${WORKERS} concurrent`
  for (const [name, r] of results) {
    const figure = (s: Summary) => `${fmt.int(s.perSec)} cycles/s, p50 ${fmt.us(s.p50)}, p99 ${fmt.us(s.p99)}; ${perCycle.get(name)}`
    if (name === 'memcached (raw)') {
      emit({ bench, name, figure: figure(r), ratio: 'baseline' })
    } else {
      // sequential: time per cycle against raw's; concurrent: throughput against raw's
      const seq = mode === 'seq'
      const ratio = seq ? r.meanUs / raw.meanUs : r.perSec / raw.perSec
      emit({
        bench,
        name,
        figure: figure(r),
        ratio: seq ? `${fmt.x(ratio)} raw's time (p50 ${fmt.x(r.p50 / raw.p50)})` : `${fmt.x(ratio)} raw's throughput`,
        ...(name === 'tied-session' ? { target: seq ? '<= 1.15x' : '>= 0.90x', result: verdict(seq ? ratio <= 1.15 : ratio >= 0.9) } : {}),
      })
    }
  }
  // the distance to the wire: tied-session against the floor client, measured in the same rounds
  const tiedResult = results.get('tied-session')!
  const floor = results.get('floor (1 socket)')!
  const seq = mode === 'seq'
  const toFloor = seq ? tiedResult.meanUs / floor.meanUs : tiedResult.perSec / floor.perSec
  emit({
    bench,
    name: 'tied-session against the floor',
    figure: seq
      ? `${fmt.us(tiedResult.meanUs)} vs ${fmt.us(floor.meanUs)} per cycle`
      : `${fmt.int(tiedResult.perSec)} vs ${fmt.int(floor.perSec)} cycles/s`,
    ratio: seq ? `${fmt.x(toFloor)} the floor's time` : `${fmt.x(toFloor)} the floor's throughput`,
    target: seq ? '<= 1.2x' : '>= 0.85x',
    result: verdict(seq ? toFloor <= 1.2 : toFloor >= 0.85),
  })
  // where that distance is: the store's part, then the session's on top of it
  const store = results.get("tied-session's store alone")!
  const part = (a: Summary, b: Summary) => (seq ? `${fmt.x(a.meanUs / b.meanUs)} the time` : `${fmt.x(a.perSec / b.perSec)} the throughput`)
  emit({
    bench,
    name: 'where the distance is: store, then session',
    figure: seq
      ? `floor ${fmt.us(floor.meanUs)}, store alone ${fmt.us(store.meanUs)}, tied-session ${fmt.us(tiedResult.meanUs)} per cycle`
      : `floor ${fmt.int(floor.perSec)}, store alone ${fmt.int(store.perSec)}, tied-session ${fmt.int(tiedResult.perSec)} cycles/s`,
    ratio: `store alone: ${part(store, floor)} of the floor; tied-session: ${part(tiedResult, store)} of its store alone`,
  })
}
if (MODES.includes('seq')) {
  const [twoSaves] = await countPerOp([server], 50, async (i) => {
    const s = (await tieSession<BenchSession>(keysOf.get('tied-session')![i % WORKERS]!, { servers })) as Loaded
    s.visits++
    await save(s)
    s.visits++
    await untie(s)
  })
  emit({
    bench: 'cycle, sequential',
    name: 'tied-session, save twice',
    figure: `tie + write + save + write + untie: ${fmt.n(twoSaves!.get)} get + ${fmt.n(twoSaves!.store)} store (with meta commands a save learns the new version from ms: the 2nd save does not re-read)`,
  })
}

for (const [, client] of clients) await client.close()
await server.stop()
