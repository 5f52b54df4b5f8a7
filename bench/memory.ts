/**
 * 6 memory: heap bytes per tied session, for 10,000 tied sessions of ~1 KB, vs the same data
 * parsed into plain objects. Run with --expose-gc (the runner does).
 *
 * The store hands out a fresh string on every get and keeps nothing (as text from a socket
 * would be), so the figures count only what the sessions themselves hold.
 */
import type { Store, Tied } from '../src/index.js'
import { lib } from './lib/tied.js'
import { benchId, sessionText, type BenchSession } from './lib/data.js'
import { touch } from './lib/clients.js'
import { emit, fmt, verdict } from './lib/measure.js'

const { tieSession, untie } = lib
const COUNT = 10_000
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')

const ids = Array.from({ length: COUNT }, (_, i) => benchId('memory', i))
const index = new Map(ids.map((id, i) => [id, i]))
/** Text made afresh on each get, as a network read would; writes are accepted and dropped. */
const store: Store = {
  get: async (key) => ({ value: sessionText(key, index.get(key)!), version: '1' }),
  write: async () => 'stored',
  delete: async () => true,
  touch: async () => true,
  close: async () => undefined,
}

async function heap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    gc!()
  }
  return process.memoryUsage().heapUsed
}

async function perSession(make: (id: string, i: number) => Promise<object>, after?: (o: object, i: number) => void): Promise<number> {
  const before = await heap()
  const held: object[] = []
  for (let i = 0; i < COUNT; i++) held.push(await make(ids[i]!, i))
  if (after) held.forEach((o, i) => after(o, i))
  const bytes = ((await heap()) - before) / COUNT
  return bytes + held.length * 0 // `held` stays alive until here
}

const plainOf = async (id: string, i: number) => JSON.parse(sessionText(id, i)) as object
const tiedOf = (id: string) => tieSession<BenchSession>(id, { store })
const work = (o: object, i: number) => touch(o as BenchSession, i)

const tiedSessions: Array<Tied<BenchSession>> = []
let plain = 0
let tied = 0
let plainTouched = 0
let tiedTouched = 0
// twice, side by side; the second run's figures are kept (the first warms the code)
for (let run = 0; run < 2; run++) {
  plain = await perSession(plainOf)
  tied = await perSession(tiedOf)
  plainTouched = await perSession(plainOf, work)
  tiedTouched = await perSession(async (id) => {
    const s = await tiedOf(id)
    tiedSessions.push(s)
    return s
  }, work)
  for (const s of tiedSessions.splice(0)) await untie(s)
}
const textBytes = sessionText(ids[0]!, 0).length

emit({
  bench: `memory (${fmt.int(COUNT)} sessions of ~1 KB)`,
  name: 'tied, as loaded',
  figure: `${fmt.int(tied)} B/session tied, ${fmt.int(plain)} B plain (stored JSON: ${textBytes} chars)`,
  ratio: `${fmt.x(tied / plain)} plain`,
  target: '<= 1.5x',
  result: verdict(tied / plain <= 1.5),
})
emit({
  bench: `memory (${fmt.int(COUNT)} sessions of ~1 KB)`,
  name: 'tied, after read 3 + write 1',
  figure: `${fmt.int(tiedTouched)} B/session tied, ${fmt.int(plainTouched)} B plain (nested proxies made by the reads)`,
  ratio: `${fmt.x(tiedTouched / plainTouched)} plain`,
})
