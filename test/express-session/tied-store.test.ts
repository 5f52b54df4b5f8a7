import { promisify } from 'node:util'
import anyTest, { type TestFn } from 'ava'
import express from 'express'
import session from 'express-session'
import { findSessions, tieSession, untie } from '../../src/index.js'
import { TiedStore } from '../../src/express-session/index.js'
import { Browser, serve } from '../helpers/web.js'
import { STORE_KINDS, storedData, useStore } from '../helpers/web-stores.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>

declare module 'express-session' {
  interface SessionData {
    visits: number
    uid: string
  }
}

let made = 0
/** express-session's genid: ids the store did not make. */
const genid = () => `genid-${process.pid}-${++made}-${Math.random().toString(36).slice(2)}`

function expressApp(store: TiedStore) {
  const app = express()
  app.use(session({ store, secret: 'es-secret', resave: false, saveUninitialized: false, genid }))
  app.get('/visit', (req, res) => {
    req.session.visits = (req.session.visits ?? 0) + 1
    res.send(`${req.sessionID} ${req.session.visits}`)
  })
  app.post('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err)
      req.session.uid = 'dwho'
      res.redirect('/visit')
    })
  })
  app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.send('bye'))))
  return app
}

for (const kind of STORE_KINDS) {
  test(`TiedStore, ${kind}: express-session with genid stores, reads, regenerates and destroys through it`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, expressApp(new TiedStore({ store, principal: 'uid' }))))
    const [sid, visits] = (await b.text('/visit')).split(' ')
    t.regex(sid!, /^genid-/)
    t.is(visits, '1')
    t.like(await storedData(store, sid!), { visits: 1, _session_id: sid, cookie: { path: '/' } })
    t.is((await b.text('/visit')).split(' ')[1], '2')
    const login = await b.fetch('/login', { method: 'POST' })
    t.is(login.status, 302)
    // express-session sends a redirect's headers before its save is done: the body waits for it
    await login.text()
    const [newSid] = (await b.text('/visit')).split(' ')
    t.not(newSid, sid)
    t.is(await store.get(sid!), undefined, 'regenerate destroyed the old id')
    t.deepEqual(await findSessions('dwho', { store, principal: 'uid' }), [newSid])
    t.is(await b.text('/logout', { method: 'POST' }), 'bye')
    t.is(await store.get(newSid!), undefined)
    t.deepEqual(await findSessions('dwho', { store, principal: 'uid' }), [])
  })

  test(`TiedStore, ${kind}: get, set, touch, destroy, all, length, clear`, async (t) => {
    const { store } = await useStore(t, kind)
    const ts = new TiedStore({ store, principal: 'uid' })
    const get = promisify(ts.get.bind(ts))
    const set = promisify(ts.set.bind(ts))
    const cookie = { originalMaxAge: null, path: '/', httpOnly: true } as Any
    t.is(await get('nobody-here'), null)
    t.is(await get('not a valid id!'), null)
    await set('made-by-genid', { cookie, uid: 'dwho', visits: 1 } as any)
    await set('made-by-genid', { cookie, uid: 'dwho', visits: 2 } as any)
    await set('other', { cookie, visits: 5 } as any)
    t.like(await get('made-by-genid'), { uid: 'dwho', visits: 2 })
    t.is(((await get('made-by-genid')) as any)._session_id, undefined)
    await promisify(ts.touch.bind(ts))('made-by-genid', { cookie } as any)
    await promisify(ts.touch.bind(ts))('gone', { cookie } as any)
    // a session of tieSession's own, and the user index key: all lists the sessions only
    const own = await tieSession(undefined, { store })
    own.visits = 9
    await untie(own)
    t.is(await get(own._session_id), null, 'no cookie field: not a session express-session can use')
    const all = (await promisify(ts.all.bind(ts))()) as Record<string, Any>
    t.deepEqual(Object.keys(all).sort(), ['made-by-genid', 'other', own._session_id].sort())
    t.is(await promisify(ts.length.bind(ts))(), 3)
    await promisify(ts.destroy.bind(ts))('other')
    await promisify(ts.destroy.bind(ts))('other')
    t.is(await get('other'), null)
    await promisify(ts.clear.bind(ts))()
    t.is(await promisify(ts.length.bind(ts))(), 0)
    t.deepEqual(await findSessions('dwho', { store, principal: 'uid' }), [])
  })
}

test('TiedStore: errors reach the callback; a store that is down is ERR_STORE_UNAVAILABLE', async (t) => {
  const { store, server } = await useStore(t, 'memcached', { requestTimeout: 200 })
  const ts = new TiedStore({ store })
  await server!.stop()
  const err = await t.throwsAsync(promisify(ts.get.bind(ts))('some-id'))
  t.is((err as any).code, 'ERR_STORE_UNAVAILABLE')
  const err2 = await t.throwsAsync(promisify(ts.set.bind(ts))('some-id', { cookie: {} } as any))
  t.is((err2 as any).code, 'ERR_STORE_UNAVAILABLE')
})

test('TiedStore: options it cannot honour are TypeErrors', (t) => {
  t.throws(() => new TiedStore({ lock: 'exclusive' } as any), { instanceOf: TypeError, message: /lock/ })
  t.throws(() => new TiedStore({ expirez: 1 } as any), { instanceOf: TypeError, message: /expirez/ })
})
