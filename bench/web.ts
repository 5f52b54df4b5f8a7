/**
 * `npm run bench -- web`: a small Express app (read the session, increment a counter, respond)
 * with tied-session's sessionMiddleware against express-session + connect-memcached on the same
 * memcached, 64 keep-alive connections (one user each), requests/s and p99 side by side; then
 * 20 overlapping requests of one user each pushing to one cart: how many items each keeps.
 *
 * The apps and the load run in this one process (a hand-rolled loop over node:http), so both
 * contestants share the CPU alike; the figures are relative, not a server's capacity.
 */
import http from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import express, { type Request } from 'express'
import { BUILD_DIR } from './lib/build.js'
import { startMemcached } from './lib/memcached.js'
import { emit, fmt, sideBySide, verdict } from './lib/measure.js'
import { lib } from './lib/tied.js'

type Http = typeof import('../src/http/index.js')
const which = process.env.BENCH_LIB ?? 'dist'
// the http adapter of the same build as ./lib/tied.ts loads (src/ through tsx with BENCH_LIB=src)
const web: Http =
  which === 'src'
    ? await import('../src/http/index.js')
    : ((await import(pathToFileURL(path.join(BUILD_DIR, 'dist', 'http', 'index.js')).href)) as Http)

const require = createRequire(import.meta.url)
const QUICK = process.env.BENCH_QUICK === '1'
const CONNECTIONS = 64
const server = await startMemcached()
const SECRET = 'bench secret'

type Data = { n?: number; cart?: { items: number[] } }

function tiedApp(lock: 'none' | 'exclusive') {
  const app = express()
  const store = lib.memcachedStore({ servers: [server.address] })
  app.use(web.sessionMiddleware({ store, lock, cookie: { secret: SECRET } }))
  const session = (req: Request) => (req as unknown as { session: Data }).session
  app.get('/count', (req, res) => {
    const s = session(req)
    s.n = (s.n ?? 0) + 1
    res.send(String(s.n))
  })
  app.get('/cart', (req, res) => {
    ;(session(req).cart ??= { items: [] }).items.push(Number(req.query.i))
    res.send('ok')
  })
  app.get('/items', (req, res) => res.send(String(session(req).cart?.items.length ?? 0)))
  return { app, close: () => store.close() }
}

function expressSessionApp() {
  const session = require('express-session') as typeof import('express-session')
  const MemcachedStore = (require('connect-memcached') as (s: object) => new (o: object) => import('express-session').Store)(session)
  const store = new MemcachedStore({ hosts: [server.address] }) as import('express-session').Store & { client: { end(): void } }
  const app = express()
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }))
  const data = (req: Request) => req.session as unknown as Data
  app.get('/count', (req, res) => {
    const s = data(req)
    s.n = (s.n ?? 0) + 1
    res.send(String(s.n))
  })
  app.get('/cart', (req, res) => {
    ;(data(req).cart ??= { items: [] }).items.push(Number(req.query.i))
    res.send('ok')
  })
  app.get('/items', (req, res) => res.send(String(data(req).cart?.items.length ?? 0)))
  return { app, close: async () => store.client.end() }
}

async function listen(app: express.Express): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = http.createServer(app)
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()))
  return {
    port: (srv.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections()
        srv.close(() => resolve())
      }),
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS })

/** One GET; resolves to the body and the session cookie set, if any. */
function get(port: number, pathname: string, cookie?: string): Promise<{ body: string; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, agent, headers: cookie ? { cookie } : {} }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ body, cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${pathname} in 10 s`)))
  })
}

const apps = [
  { name: 'tied-session sessionMiddleware', ...tiedApp('none') },
  { name: "tied-session, lock: 'exclusive'", ...tiedApp('exclusive') },
  { name: 'express-session + connect-memcached', ...expressSessionApp() },
]
const running = await Promise.all(apps.map(async (a) => ({ ...a, http: await listen(a.app) })))

// one user per connection: a first request makes each one's session and cookie
const cookies = new Map<string, string[]>()
for (const a of running) {
  const list: string[] = []
  for (let w = 0; w < CONNECTIONS; w++) list.push((await get(a.http.port, '/count')).cookie!)
  cookies.set(a.name, list)
}

const results = await sideBySide(
  running.map((a) => ({
    name: a.name,
    op: async (w: number) => void (await get(a.http.port, '/count', cookies.get(a.name)![w])),
  })),
  { rounds: QUICK ? 2 : 5, sliceMs: QUICK ? 500 : 1500, concurrency: CONNECTIONS },
)
const base = results.get('express-session + connect-memcached')!
const bench = `web, Express, ${CONNECTIONS} connections`
for (const [name, r] of results) {
  const figure = `${fmt.int(r.perSec)} req/s, p50 ${fmt.us(r.p50)}, p99 ${fmt.us(r.p99)}`
  if (r === base) emit({ bench, name, figure, ratio: 'baseline' })
  else {
    const ratio = r.perSec / base.perSec
    const target = name === 'tied-session sessionMiddleware'
    emit({
      bench,
      name,
      figure,
      ratio: `${fmt.x(ratio)} express-session's req/s`,
      ...(target ? { target: '>= 1.0x', result: verdict(ratio >= 1) } : {}),
    })
  }
}

// 20 overlapping requests of one user, each pushing one item to the same cart
for (const a of running) {
  const { cookie } = await get(a.http.port, '/count')
  await Promise.all(Array.from({ length: 20 }, (_, i) => get(a.http.port, `/cart?i=${i}`, cookie)))
  const kept = Number((await get(a.http.port, '/items', cookie)).body)
  emit({
    bench: 'web, 20 overlapping pushes to one cart',
    name: a.name,
    figure: `${kept}/20 items kept`,
    ...(a.name.startsWith('tied-session') ? { target: '20/20', result: verdict(kept === 20) } : {}),
  })
}

agent.destroy()
for (const a of running) {
  await a.http.close()
  await a.close()
}
await server.stop()
