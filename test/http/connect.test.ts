import http from 'node:http'
import anyTest, { type TestFn } from 'ava'
import connect from 'connect'
import { isSessionError, regenerate } from '../../src/index.js'
import { sessionMiddleware, type WithSession } from '../../src/http/index.js'
import { Browser, serve } from '../helpers/web.js'
import { useStore } from '../helpers/web-stores.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>

test('connect: the middleware in a Connect stack; a login then a redirect sees the login; a store failure reaches the error middleware', async (t) => {
  const { store, server } = await useStore(t, 'memcached', { requestTimeout: 200 })
  const app = connect()
  app.use(sessionMiddleware({ store, cookie: { secret: 'c0nnect' } }))
  app.use('/login', (req: http.IncomingMessage, res: http.ServerResponse, next: (err?: unknown) => void) => {
    const { session } = req as WithSession<Any>
    session.uid = 'dwho'
    regenerate(session).then(() => {
      res.statusCode = 302
      res.setHeader('location', '/me')
      res.end()
    }, next)
  })
  app.use('/me', (req: http.IncomingMessage, res: http.ServerResponse) =>
    res.end(String((req as WithSession<Any>).session.uid ?? 'nobody')),
  )
  app.use((err: unknown, _req: http.IncomingMessage, res: http.ServerResponse, _next: (err?: unknown) => void) => {
    res.statusCode = isSessionError(err) ? 503 : 500
    res.end(isSessionError(err) ? err.code : 'error')
  })
  const b = new Browser(await serve(t, app))
  const res = await b.fetch('/login', { method: 'POST' })
  t.is(res.status, 302)
  t.is(await b.text('/me'), 'dwho')
  await server!.stop()
  const down = await b.fetch('/me')
  t.is(down.status, 503)
  t.is(await down.text(), 'ERR_STORE_UNAVAILABLE')
})
