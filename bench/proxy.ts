/**
 * 5 proxy: ns per read and per write through a tied object, at the top level and 3 levels
 * deep, vs the same plain object. The session is tied to a memory store with default options
 * (autoSave on: the first write of a burst schedules one flush, which runs between batches).
 */
import { lib } from './lib/tied.js'
import { benchId, sessionData, type BenchSession, type Loaded } from './lib/data.js'
import { emit, fmt, medianNsPerOp, verdict } from './lib/measure.js'

const { memoryStore, tieSession, untie } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const BATCHES = QUICK ? 5 : 9
const BATCH_MS = QUICK ? 40 : 60

const store = memoryStore()
const id = benchId('proxy', 1)
await store.write(id, JSON.stringify(sessionData(id, 1)), { ttl: 0, mode: 'set' })
const tied = (await tieSession<BenchSession>(id, { store })) as Loaded
const plain = sessionData(id, 1)

type Loop = (o: BenchSession, n: number) => number
/** Each loop is compiled twice, once per object, so that neither shares the other's inline caches. */
const compile = (body: string) => () => new Function('o', 'n', body) as Loop
const ops: Array<[name: string, make: () => Loop, target?: number]> = [
  ['read, top level (s.visits)', compile('let sum = 0; for (let i = 0; i < n; i++) sum += o.visits; return sum'), 50],
  [
    'read, 3 deep (s.prefs.display.fontSize)',
    compile('let sum = 0; for (let i = 0; i < n; i++) sum += o.prefs.display.fontSize; return sum'),
  ],
  ['write, top level (s.visits = i)', compile('for (let i = 0; i < n; i++) o.visits = i; return o.visits')],
  [
    'write, 3 deep (s.prefs.display.fontSize = i)',
    compile('for (let i = 0; i < n; i++) o.prefs.display.fontSize = i; return o.prefs.display.fontSize'),
    300,
  ],
]

/** ns per op: the median over batches; each batch runs about BATCH_MS, then yields (the autoSave flush runs). */
function nsPerOp(loop: Loop, o: BenchSession): Promise<number> {
  return medianNsPerOp((n) => loop(o, n), {
    start: 1000,
    batches: BATCHES,
    batchMs: BATCH_MS,
    between: () => new Promise((resolve) => setImmediate(resolve)),
  })
}

for (const [name, make, target] of ops) {
  const plainLoop = make()
  const tiedLoop = make()
  // side by side: alternate plain and tied runs, keep each one's best median
  let p = Infinity
  let t = Infinity
  for (let round = 0; round < 2; round++) {
    p = Math.min(p, await nsPerOp(plainLoop, plain))
    t = Math.min(t, await nsPerOp(tiedLoop, tied))
  }
  emit({
    bench: 'proxy (ns per op)',
    name,
    figure: `tied ${t.toFixed(1)} ns, plain ${p.toFixed(1)} ns`,
    ratio: `${fmt.x(t / p)} plain`,
    ...(target === undefined ? {} : { target: `<= ${target} ns`, result: verdict(t <= target) }),
  })
}
await untie(tied)
