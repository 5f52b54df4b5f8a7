import type { IncomingMessage, ServerResponse } from 'node:http'
import anyTest, { type TestFn } from 'ava'
import { destroy, destroySessions, isSessionError, regenerate, save, tieSession, untie, type Store } from '../../src/index.js'
import { sessionMiddleware, sessionUrl, type WebSessionOptions, type WithSession } from '../../src/http/index.js'
import { wireValue } from '../../src/http/cookies.js'
import { resolveWebOptions } from '../../src/http/options.js'
import { Browser, idOfCookie, serve } from '../helpers/web.js'
import { STORE_KINDS, storedData, useStore } from '../helpers/web-stores.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
type Route = (req: WithSession<Any>, res: ServerResponse) => unknown

const SECRET = 'test secret, not for production'

/** A node:http app: the middleware called with a next callback, then a route by path; errors answer 503/500 with their code. */
function app(options: WebSessionOptions, routes: Record<string, Route>) {
  const mw = sessionMiddleware(options)
  const errors: unknown[] = []
  const listener = (req: IncomingMessage, res: ServerResponse) =>
    mw(req, res, (err) => {
      const fail = (e: unknown) => {
        errors.push(e)
        res.statusCode = isSessionError(e) ? 503 : 500
        res.end(`error ${isSessionError(e) ? e.code : String(e)}`)
      }
      if (err !== undefined) return fail(err)
      const route = routes[new URL(req.url ?? '/', 'http://x').pathname]
      if (route === undefined) {
        res.statusCode = 404
        res.end()
        return
      }
      Promise.resolve()
        .then(() => route(req as WithSession<Any>, res))
        .catch(fail)
    })
  return { listener, errors }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The routes most tests share. */
const routes: Record<string, Route> = {
  '/': (req, res) => res.end(`hello ${req.session.uid ?? 'nobody'}`),
  '/login': async (req, res) => {
    req.session.uid = 'dwho'
    await regenerate(req.session)
    res.statusCode = 302
    res.setHeader('location', '/me')
    res.end()
  },
  '/me': (req, res) => res.end(String(req.session.uid ?? 'nobody')),
  '/count': async (req, res) => {
    req.session.n = (req.session.n ?? 0) + 1
    await sleep(1)
    req.session.m = 1
    await sleep(1)
    res.end(String(req.session.n))
  },
  '/logout': async (req, res) => {
    await destroy(req.session)
    res.end('bye')
  },
  '/stream': async (req, res) => {
    req.session.streamed = true
    res.write('a')
    await sleep(5)
    res.write('b')
    res.end('c')
  },
  '/head': (req, res) => {
    req.session.viaWriteHead = true
    res.writeHead(201, { 'content-type': 'text/plain' }).end('made')
  },
  '/cart': async (req, res) => {
    await sleep(Math.random() * 5)
    ;(req.session.cart ??= { items: [] }).items.push(Number(new URL(req.url!, 'http://x').searchParams.get('i')))
    res.end('ok')
  },
}

for (const kind of STORE_KINDS) {
  const opts = (store: Store, more: Partial<WebSessionOptions> = {}): WebSessionOptions => ({ store, cookie: { secret: SECRET }, ...more })

  test(`${kind}: a visitor whose session is never written gets no Set-Cookie and costs no store call`, async (t) => {
    const { store, gets, writes } = await useStore(t, kind)
    const b = new Browser(await serve(t, app(opts(store), routes).listener))
    t.is(await b.text('/'), 'hello nobody')
    t.deepEqual(b.setCookies.at(-1), [])
    t.is(gets.callCount, 0)
    t.is(writes.callCount, 0)
  })

  test(`${kind}: a login then a redirect lands on a request that sees the login, 100 of 100`, async (t) => {
    const { store } = await useStore(t, kind)
    const base = await serve(t, app(opts(store), routes).listener)
    let seen = 0
    for (let i = 0; i < 100; i++) {
      const b = new Browser(base)
      const res = await b.fetch('/login', { method: 'POST' })
      t.is(res.status, 302)
      if ((await b.text(res.headers.get('location')!)) === 'dwho') seen++
    }
    t.is(seen, 100)
  })

  test(`${kind}: a handler's writes are one save per request, stored before the response leaves`, async (t) => {
    const { store, writes } = await useStore(t, kind)
    const b = new Browser(await serve(t, app(opts(store), routes).listener))
    const res = await b.fetch('/count')
    // the response's headers are here: the save is done
    const id = idOfCookie(b)!
    t.like(await storedData(store, id), { n: 1, m: 1 })
    t.is(await res.text(), '1')
    t.is(writes.callCount, 1)
    t.is(await b.text('/count'), '2')
    t.is(writes.callCount, 2)
    t.deepEqual(b.setCookies.at(-1), [], 'the same id: no new cookie')
  })

  test(`${kind}: an explicit writeHead (chained to end) waits for the save and carries the cookie`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, app(opts(store), routes).listener))
    const res = await b.fetch('/head')
    t.is(res.status, 201)
    t.is(res.headers.get('content-type'), 'text/plain')
    t.like(await storedData(store, idOfCookie(b)!), { viaWriteHead: true })
    t.is(await res.text(), 'made')
  })

  test(`${kind}: a streamed body waits for the save too`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, app(opts(store), routes).listener))
    const res = await b.fetch('/stream')
    t.like(await storedData(store, idOfCookie(b)!), { streamed: true })
    t.is(await res.text(), 'abc')
  })

  for (const lock of ['none', 'exclusive'] as const) {
    test(`${kind}: 20 overlapping requests of one user each pushing to the cart keep all 20 (lock: '${lock}')`, async (t) => {
      const { store } = await useStore(t, kind)
      const b = new Browser(await serve(t, app(opts(store, { lock }), routes).listener))
      await b.text('/count')
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => b.fetch(`/cart?i=${i}`).then((r) => r.status)))
      t.deepEqual(
        answers,
        Array.from({ length: 20 }, () => 200),
      )
      const items: number[] = (await storedData(store, idOfCookie(b)!)).cart.items
      t.deepEqual(
        [...items].sort((x, y) => x - y),
        Array.from({ length: 20 }, (_, i) => i),
      )
    })
  }

  test(`${kind}: rolling: a read-only request extends the session (expires 2, read each second for 4 s) and re-sends a cookie with maxAge`, async (t) => {
    const { store, writes } = await useStore(t, kind)
    const rolling = opts(store, { expires: 2, rolling: true, cookie: { secret: SECRET, maxAge: 3600 } })
    const b = new Browser(await serve(t, app(rolling, routes).listener))
    await b.fetch('/login', { method: 'POST' })
    const written = writes.callCount
    for (let i = 0; i < 4; i++) {
      await sleep(1000)
      t.is(await b.text('/me'), 'dwho')
      t.regex(b.setCookies.at(-1)?.[0] ?? '', /Max-Age=3600/, 'the cookie is sent again: its Max-Age counts from now')
    }
    t.is(writes.callCount, written, 'no write: the TTL is extended by the read')
    const plain = new Browser(await serve(t, app(opts(store, { expires: 60 }), routes).listener))
    await plain.fetch('/login', { method: 'POST' })
    await plain.text('/me')
    t.deepEqual(plain.setCookies.at(-1), [], 'without rolling, an unchanged session sends no cookie')
  })

  test(`${kind}: regenerate gives a new cookie and the old id is gone; destroy clears the cookie`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, app(opts(store), routes).listener))
    await b.text('/count')
    const before = idOfCookie(b)!
    await b.fetch('/login', { method: 'POST' })
    const after = idOfCookie(b)!
    t.not(after, before)
    t.is(await store.get(before), undefined)
    t.like(await storedData(store, after), { uid: 'dwho', n: 1 })
    t.is(await b.text('/logout'), 'bye')
    t.regex(b.setCookies.at(-1)![0]!, /^sid=; .*Max-Age=0/)
    t.false(b.cookies.has('sid'))
    t.is(await store.get(after), undefined)
  })

  test(`${kind}: destroySessions(uid) logs the user's other browsers out at their next request`, async (t) => {
    const { store } = await useStore(t, kind)
    const base = await serve(t, app(opts(store, { principal: 'uid' }), routes).listener)
    const laptop = new Browser(base)
    const phone = new Browser(base)
    await laptop.fetch('/login', { method: 'POST' })
    await phone.fetch('/login', { method: 'POST' })
    t.is(await phone.text('/me'), 'dwho')
    t.is(await destroySessions('dwho', { store, principal: 'uid' }), 2)
    t.is(await phone.text('/me'), 'nobody')
    t.is(await laptop.text('/me'), 'nobody')
  })

  test(`${kind}: a missing, unknown, expired, malformed or tampered cookie is a fresh session; a bad id never reaches the store`, async (t) => {
    const { store, gets } = await useStore(t, kind)
    const { listener, errors } = app(opts(store), routes)
    const base = await serve(t, listener)
    const good = new Browser(base)
    await good.text('/count')
    const value = good.cookies.get('sid')!
    const [, id = '', sig = ''] = /^s%3A([^.]+)\.(.*)$/.exec(value)!
    const expired = await tieSession(undefined, { store, expires: 1 })
    expired.x = 1
    await untie(expired)
    await sleep(2100)
    const tries: [string, boolean][] = [
      [`s%3A${id}.${sig.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))}`, false], // tampered signature
      [id, false], // unsigned where signed cookies are expected
      [`s%3A..%2Fetc.${sig}`, false], // malformed
      ['s%3A0123456789abcdef0123456789abcdef.xyz', false], // forged
      [`s%3A0123456789abcdef0123456789abcdef.${sig}`, false], // another id under a signature that is not its own
    ]
    for (const [cookie, reachesStore] of tries) {
      gets.resetHistory()
      const res = await fetch(`${base}/me`, { headers: { cookie: `sid=${cookie}` } })
      t.is(await res.text(), 'nobody', cookie)
      t.deepEqual(res.headers.getSetCookie(), [])
      t.is(gets.callCount > 0, reachesStore, cookie)
    }
    // a well-signed unknown or expired id is looked up (one get), and is a fresh session too
    const config = resolveWebOptions({ store, cookie: { secret: SECRET } })
    for (const ghost of [expired._session_id, '0123456789abcdef0123456789abcdef']) {
      gets.resetHistory()
      const res = await fetch(`${base}/me`, { headers: { cookie: `sid=${encodeURIComponent(wireValue(config, ghost))}` } })
      t.is(await res.text(), 'nobody')
      t.is(gets.callCount, 1)
    }
    t.deepEqual(errors, [])
  })

  test(`${kind}: a store that is down is next(err) with the SessionError before anything was sent`, async (t) => {
    if (kind === 'file') return t.pass('the file store does not go down')
    const { store, server } = await useStore(t, kind, { requestTimeout: 200 })
    const { listener, errors } = app(opts(store), routes)
    const b = new Browser(await serve(t, listener))
    await b.text('/count')
    await server!.stop()
    // loading: the cookie names a session the store cannot be asked about
    const res = await b.fetch('/me')
    t.is(res.status, 503)
    t.is(await res.text(), 'error ERR_STORE_UNAVAILABLE')
    // saving: a fresh visitor whose handler writes; the handler's own response is never sent
    const fresh = new Browser(b.base)
    const res2 = await fresh.fetch('/login', { method: 'POST' })
    t.is(res2.status, 503)
    t.is(res2.headers.get('location'), null)
    t.deepEqual(res2.headers.getSetCookie(), [])
    t.true(errors.length >= 2 && errors.every((e) => isSessionError(e, 'ERR_STORE_UNAVAILABLE')))
  })
}

test('options: unknown keys and bad values are TypeErrors, checked once', (t) => {
  t.throws(() => sessionMiddleware({ cookie: { nmae: 'x' } } as any), { instanceOf: TypeError, message: /cookie\.nmae/ })
  t.throws(() => sessionMiddleware({ serverz: [] } as any), { instanceOf: TypeError, message: /serverz/ })
  t.throws(() => sessionMiddleware({ cookie: { signed: true } }), { instanceOf: TypeError, message: /secret/ })
  t.throws(() => sessionMiddleware({ autoSave: true } as any), { instanceOf: TypeError, message: /autoSave/ })
  t.throws(() => sessionMiddleware({ idFrom: ['url'] } as any), { instanceOf: TypeError, message: /idFrom/ })
  t.throws(() => sessionMiddleware({ cookie: { maxAge: -1 } }), { instanceOf: TypeError, message: /maxAge/ })
})

test('cookie attributes: defaults, maxAge, domain, secure auto behind a trusted proxy', async (t) => {
  const { store } = await useStore(t, 'file')
  const plain = new Browser(await serve(t, app({ store, cookie: { secret: SECRET } }, routes).listener))
  await plain.text('/count')
  t.regex(plain.setCookies.at(-1)![0]!, /^sid=s%3A[0-9a-f]{32}\.[A-Za-z0-9%]+; Path=\/; HttpOnly; SameSite=Lax$/)
  const proxied = app({ store, trustProxy: true, cookie: { secret: SECRET, maxAge: 600, domain: 'example.test', name: 'portal' } }, routes)
  const base = await serve(t, proxied.listener)
  const res = await fetch(`${base}/count`, { headers: { 'x-forwarded-proto': 'https' } })
  t.regex(res.headers.getSetCookie()[0]!, /^portal=s%3A.*; Max-Age=600; Domain=example.test; Path=\/; HttpOnly; Secure; SameSite=Lax$/)
  const untrusted = await fetch(`${await serve(t, app({ store, cookie: { secret: SECRET } }, routes).listener)}/count`, {
    headers: { 'x-forwarded-proto': 'https' },
  })
  t.notRegex(untrusted.headers.getSetCookie()[0]!, /Secure/)
})

test('secret rotation: a cookie signed with an older secret is accepted; new cookies are signed with the first', async (t) => {
  const { store } = await useStore(t, 'file')
  const before = new Browser(await serve(t, app({ store, cookie: { secret: 'old' } }, routes).listener))
  await before.text('/count')
  const rotated = new Browser(await serve(t, app({ store, cookie: { secret: ['new', 'old'] } }, routes).listener))
  rotated.cookies.set('sid', before.cookies.get('sid')!)
  t.is(await rotated.text('/count'), '2')
  await rotated.fetch('/login', { method: 'POST' })
  const onlyNew = new Browser(await serve(t, app({ store, cookie: { secret: 'new' } }, routes).listener))
  onlyNew.cookies.set('sid', rotated.cookies.get('sid')!)
  t.is(await onlyNew.text('/me'), 'dwho')
})

test('unsigned cookies carry a bare id (as Perl portals write them), and readOnly apps read them without writing', async (t) => {
  const { store, writes } = await useStore(t, 'file')
  const portal = await tieSession(undefined, { store })
  portal.uid = 'rtyler'
  await untie(portal)
  writes.resetHistory()
  const reader = app({ store, readOnly: true, cookie: { name: 'lemonldap', signed: false } }, routes)
  const b = new Browser(await serve(t, reader.listener))
  b.cookies.set('lemonldap', portal._session_id)
  t.is(await b.text('/me'), 'rtyler')
  t.is(await b.text('/count'), '1')
  t.is(writes.callCount, 0, 'readOnly never writes')
  t.deepEqual(b.setCookies.flat(), [])
  t.is((await tieSession<Any>(portal._session_id, { store })).n, undefined)
})

test("idFrom: 'query' and 'header' carry the id for clients without cookies; sessionUrl adds it", async (t) => {
  const { store } = await useStore(t, 'file')
  const withUrl: Record<string, Route> = {
    ...routes,
    '/link': (req, res) => {
      req.session.seen = true
      res.end(sessionUrl(req, '/me?x=1#top'))
    },
  }
  const base = await serve(t, app({ store, idFrom: ['cookie', 'query', 'header'], cookie: { secret: SECRET } }, withUrl).listener)
  const link = await (await fetch(`${base}/link`)).text()
  t.regex(link, /^\/me\?x=1&sid=s%3A[0-9a-f]{32}\.[^#]+#top$/)
  const session = await tieSession<Any>(/s%3A([0-9a-f]{32})/.exec(link)![1]!, { store })
  session.uid = 'dwho'
  await save(session)
  t.is(await (await fetch(base + link)).text(), 'dwho')
  const value = decodeURIComponent(/sid=([^#]+)/.exec(link)![1]!)
  t.is(await (await fetch(`${base}/me`, { headers: { 'x-session-id': value } })).text(), 'dwho')
  const cookieOnly = await serve(t, app({ store, cookie: { secret: SECRET } }, withUrl).listener)
  t.is(await (await fetch(cookieOnly + link)).text(), 'nobody', 'query ids are opt-in')
})
