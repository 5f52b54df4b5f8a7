/**
 * 2 local hit: tie a session that the `local` server holds vs tie it from the principal, and
 * count the principal's commands and the bytes it sends per tie from its `stats`. A local copy is
 * served only when the principal says it is current (meta `mg <key> c`: a cas, no value), so the
 * target is that the principal sends no session value. Also counted, not timed against a target:
 * a request that writes (write-through: the next request is a local hit again).
 */
import { lib } from './lib/tied.js'
import { benchId, sessionText, type BenchSession, type Loaded } from './lib/data.js'
import { rawClient, touch } from './lib/clients.js'
import { countPerOp, startMemcached } from './lib/memcached.js'
import { consume, emit, fmt, sideBySide, verdict } from './lib/measure.js'

const { closeStores, tieSession, untie } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const KEYS = 64
const principal = await startMemcached()
const local = await startMemcached()
const viaPrincipal = { servers: [principal.address] }
const viaLocal = { servers: [principal.address], local: [local.address] }
const trusting = { ...viaLocal, trustLocal: true }

const seeder = rawClient(principal.address)
const ids = Array.from({ length: KEYS }, (_, i) => benchId('local', i))
for (const [i, id] of ids.entries()) await seeder.seed(id, sessionText(id, i))
await seeder.close()

/** A read-only request: tie, read 3 fields, untie (nothing changed, so nothing is written). */
const readOnly = (opts: object) => async (i: number) => {
  const s = (await tieSession<BenchSession>(ids[i % KEYS]!, opts)) as Loaded
  consume(s.uid)
  consume(s.email)
  consume(s.prefs.theme)
  await untie(s)
}
let next = 0
const fromPrincipal = readOnly(viaPrincipal)
const fromLocal = readOnly(viaLocal)
const fromTrusted = readOnly(trusting)
// the first tie through `local` copies each session there
for (let i = 0; i < KEYS; i++) await fromLocal(i)

const results = await sideBySide(
  [
    { name: 'principal', op: () => fromPrincipal(next++) },
    { name: 'local hit', op: () => fromLocal(next++) },
    { name: 'trusted', op: () => fromTrusted(next++) },
  ],
  { rounds: QUICK ? 2 : 5, sliceMs: QUICK ? 300 : 600, concurrency: 1 },
)
const p = results.get('principal')!
const l = results.get('local hit')!
const tr = results.get('trusted')!

const [pp, pl] = await countPerOp([principal, local], 100, fromPrincipal)
const [lp, ll] = await countPerOp([principal, local], 100, fromLocal)
const [tp, tl] = await countPerOp([principal, local], 100, fromTrusted)
let n = 0
const [wp, wl] = await countPerOp([principal, local], 100, async (i) => {
  const s = (await tieSession<BenchSession>(ids[i % KEYS]!, viaLocal)) as Loaded
  touch(s, n++)
  await untie(s)
})
const per = (c: { get: number; store: number; other: number; bytes: number }) =>
  `${fmt.n(c.get)} get + ${fmt.n(c.store)} store${c.other ? ` + ${fmt.n(c.other)} del` : ''} (${fmt.int(c.bytes)} B sent)`

emit({
  bench: 'local hit (tie + read 3 + untie)',
  name: 'from the principal',
  figure: `${fmt.int(p.perSec)} ties/s, p50 ${fmt.us(p.p50)}, p99 ${fmt.us(p.p99)}; principal ${per(pp!)}, local ${per(pl!)}`,
  ratio: 'baseline',
})
emit({
  bench: 'local hit (tie + read 3 + untie)',
  name: 'from local (hit)',
  figure: `${fmt.int(l.perSec)} ties/s, p50 ${fmt.us(l.p50)}, p99 ${fmt.us(l.p99)}; principal ${per(lp!)}, local ${per(ll!)}`,
  ratio: `${fmt.x(l.meanUs / p.meanUs)} principal's time`,
  target: 'principal sends no value (< 100 B)',
  result: verdict(lp!.bytes < 100),
})
emit({
  bench: 'local hit (tie + read 3 + untie)',
  name: 'from local, trustLocal (unchecked)',
  figure: `${fmt.int(tr.perSec)} ties/s, p50 ${fmt.us(tr.p50)}, p99 ${fmt.us(tr.p99)}; principal ${per(tp!)}, local ${per(tl!)}`,
  ratio: `${fmt.x(tr.meanUs / p.meanUs)} principal's time`,
})
emit({
  bench: 'local hit (tie + read 3 + untie)',
  name: 'with local, + 1 write',
  figure: `principal ${per(wp!)}, local ${per(wl!)} per cycle (the read knows the version: the save is one cas; write-through puts the new version into local)`,
})

await closeStores()
await principal.stop()
await local.stop()
