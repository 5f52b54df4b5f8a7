/**
 * serializers: µs to encode and to decode one ~1 KB session, json (ASCII-only output, the
 * default) next to storable (Perl's nfreeze/thaw) and plain JSON.stringify (what json cost before
 * its output became ASCII-only). Two data sets: ASCII text, and the same with "José 中文 😀" in
 * every string (where the escapes cost). Median of batches; the contestants alternate.
 */
import { lib } from './lib/tied.js'
import { benchId, sessionData } from './lib/data.js'
import { emit, medianNsPerOp } from './lib/measure.js'

const { json, storable } = lib
const QUICK = process.env.BENCH_QUICK === '1'
const BATCHES = QUICK ? 5 : 11
const BATCH_MS = QUICK ? 20 : 50

const ascii = sessionData(benchId('serializers', 1), 1)
const wide = JSON.parse(JSON.stringify(ascii).replace(/"(Item number|Ada Lovelace)/g, '"José 中文 😀 $1')) as typeof ascii

/** µs per call of `op`: the median over batches of about BATCH_MS each. */
async function usPerOp(op: () => unknown): Promise<number> {
  const ns = await medianNsPerOp(
    (n) => {
      for (let i = 0; i < n; i++) op()
    },
    { start: 100, batches: BATCHES, batchMs: BATCH_MS },
  )
  return ns / 1000
}

for (const [label, data] of [
  ['ASCII data', ascii],
  ['"José 中文 😀" in 7 strings', wide],
] as const) {
  const contestants: Array<[name: string, encode: () => string, decode: () => unknown, bytes: number]> = []
  const raw = JSON.stringify(data)
  contestants.push(['JSON.stringify/parse (raw UTF-8, before)', () => JSON.stringify(data), () => JSON.parse(raw), Buffer.byteLength(raw)])
  const text = json.stringify(data)
  contestants.push(['json (ASCII-only)', () => json.stringify(data), () => json.parse(text), Buffer.byteLength(text)])
  const frozen = storable.stringify(data)
  contestants.push(['storable (nfreeze/thaw)', () => storable.stringify(data), () => storable.parse(frozen), frozen.length])
  for (const [name, encode, decode, bytes] of contestants) {
    const enc = await usPerOp(encode)
    const dec = await usPerOp(decode)
    emit({
      bench: `serializers, 1 KB session, ${label}`,
      name,
      figure: `encode ${enc.toFixed(2)} µs, decode ${dec.toFixed(2)} µs, ${bytes} bytes`,
    })
  }
}
