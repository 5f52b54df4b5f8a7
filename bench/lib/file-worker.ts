/**
 * One process of the file store benchmark, kept for the whole run: args are the tmpfs and the
 * disk directory ('' when there is none) and its comma-separated session ids. Says 'ready', then
 * for each message { store, mode, ms } runs that many ms of cycles and answers { cycles, ms }.
 * `store` is 'tmpfs' or 'disk' (a file store on that directory) or 'memory' (a memory store of
 * this process, seeded with the same sessions); `mode` 'write' is tie + read 3 + write 1 nested +
 * untie, 'read' is tie + read 3 + untie (nothing changed, so nothing is written).
 */
import { lib } from './tied.js'
import { sessionText, type BenchSession, type Loaded } from './data.js'
import { touch } from './clients.js'
import { consume } from './measure.js'

type StoreName = 'tmpfs' | 'disk' | 'memory'
export interface Job {
  store: StoreName
  mode: 'write' | 'read'
  ms: number
}

const { fileStore, memoryStore, tieSession, untie } = lib
const [tmpfs, disk, idList] = process.argv.slice(2)
const ids = idList!.split(',')
const memory = memoryStore()
for (const [i, id] of ids.entries()) await memory.write(id, sessionText(id, i), { ttl: 86400, mode: 'set' })
const stores = {
  tmpfs: tmpfs ? fileStore({ directory: tmpfs }) : undefined,
  disk: disk ? fileStore({ directory: disk }) : undefined,
  memory,
}

const send = (m: unknown) => new Promise<void>((resolve) => process.send!(m, () => resolve()))

async function run({ store: name, mode, ms }: Job): Promise<{ cycles: number; ms: number }> {
  const store = stores[name]!
  let cycles = 0
  const start = performance.now()
  const end = start + ms
  while (performance.now() < end) {
    const s = (await tieSession<BenchSession>(ids[cycles % ids.length]!, { store })) as Loaded
    if (mode === 'write') touch(s, cycles)
    else consume([s.uid, s.email, s.prefs.theme])
    await untie(s)
    cycles++
  }
  return { cycles, ms: performance.now() - start }
}

process.on('message', (job: Job | 'exit') => {
  if (job === 'exit') {
    void Promise.all([stores.tmpfs?.close(), stores.disk?.close(), memory.close()]).then(() => process.disconnect())
    return
  }
  void run(job).then(send)
})
await send('ready')
