/**
 * One process of the file store benchmark: args are the directory, its comma-separated
 * session ids and the ms to run. Says 'ready', waits for 'go', runs cycles for that long,
 * then sends { cycles, ms } and exits.
 */
import { lib } from './tied.js'
import type { BenchSession, Loaded } from './data.js'
import { touch } from './clients.js'

const { fileStore, tieSession, untie } = lib
const [directory, idList, msArg] = process.argv.slice(2)
const ids = idList!.split(',')
const store = fileStore({ directory: directory! })

const send = (m: unknown) => new Promise<void>((resolve) => process.send!(m, () => resolve()))
const go = new Promise<void>((resolve) => process.once('message', () => resolve()))
await send('ready')
await go

let cycles = 0
const start = performance.now()
const end = start + Number(msArg)
while (performance.now() < end) {
  const s = (await tieSession<BenchSession>(ids[cycles % ids.length]!, { store })) as Loaded
  touch(s, cycles)
  await untie(s)
  cycles++
}
const ms = performance.now() - start
await store.close()
await send({ cycles, ms })
process.disconnect()
