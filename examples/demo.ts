// The quick-start demonstration (`npm start`): runs on the embedded file store, no server.
// It creates a session, writes nested data, re-ties the session by id in a second process,
// and prints what it did.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { destroy, save, tieSession, untie } from '../src/index.js'

interface Demo {
  uid?: string
  cart?: { items: Array<{ sku: number; qty: number }>; currency: string }
  visits?: number
}

const say = (text: string) => console.log(text)

if (process.argv[2] === '--second-process') {
  const id = process.argv[3]
  const s = await tieSession<Demo>(id)
  say(`  [pid ${process.pid}] tied ${id}: uid=${s.uid}, ${s.cart?.items.length} items in the cart, visits=${s.visits}`)
  s.visits = (s.visits ?? 0) + 1
  s.cart?.items.push({ sku: 7, qty: 1 })
  say(`  [pid ${process.pid}] added an item and counted a visit; untie writes both back`)
  await untie(s)
} else {
  say('tied-session demo: sessions on the embedded file store (no server needed)\n')
  const s = await tieSession<Demo>()
  say(`1. [pid ${process.pid}] tied a new session: ${s._session_id}`)
  s.uid = 'dwho'
  s.cart = { items: [], currency: 'EUR' }
  s.cart.items.push({ sku: 42, qty: 2 })
  s.visits = 1
  await save(s)
  say(`2. wrote nested data with plain assignments and push(): ${JSON.stringify({ ...s })}`)

  say('3. a second process ties the same session by id:')
  const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--second-process', s._session_id], {
    stdio: 'inherit',
  })
  if (child.status !== 0) throw new Error(`the second process failed (exit ${child.status})`)

  const again = await tieSession<Demo>(s._session_id)
  say(`4. [pid ${process.pid}] tied it again and sees the other process's writes: visits=${again.visits}, items=${JSON.stringify(again.cart?.items)}`)
  await destroy(again)
  await untie(s)
  say('5. destroyed the session; done')
}
