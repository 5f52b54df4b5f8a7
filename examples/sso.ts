/**
 * `npm run demo:sso`: two apps on loopback sharing one session through one cookie. The portal
 * logs a user in (uid, regenerate, cookie) and can log them out everywhere (destroySessions);
 * the app, on another port, reads the same session read-only and shows the user. Plain
 * node:http, the file store (no server needed).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { destroySessions, fileStore, regenerate, type Store } from '../src/index.js'
import { sessionMiddleware, type WebSessionOptions, type WithSession } from '../src/http/index.js'

type Data = { uid: string }
type Handler = (req: WithSession<Data>, res: http.ServerResponse) => Promise<void> | void

/** What both apps share: the store, the user field, the cookie's name and secret. */
function shared(store: Store): WebSessionOptions {
  return { store, principal: 'uid', cookie: { name: 'sso', secret: 'demo secret: set your own' } }
}

const page = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`
const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function serve(options: WebSessionOptions, handler: Handler): http.Server {
  const mw = sessionMiddleware(options)
  return http.createServer((req, res) =>
    mw(req, res, (err) => {
      const fail = (e: unknown) => {
        res.statusCode = 503
        res.end(`session store error: ${e instanceof Error ? e.message : String(e)}`)
      }
      if (err !== undefined) return fail(err)
      Promise.resolve(handler(req as WithSession<Data>, res)).catch(fail)
    }),
  )
}

async function form(req: http.IncomingMessage): Promise<URLSearchParams> {
  let body = ''
  for await (const chunk of req) body += String(chunk)
  return new URLSearchParams(body)
}

function redirect(res: http.ServerResponse, to: string): void {
  res.statusCode = 303
  res.setHeader('location', to)
  res.end()
}

/** The two running apps. */
export interface SsoDemo {
  portal: string
  app: string
  close(): Promise<void>
}

/** Starts the portal and the app on 127.0.0.1 (free ports unless given), over `store` or a fresh file store. */
export async function startSsoDemo(opts: { store?: Store; portalPort?: number; appPort?: number } = {}): Promise<SsoDemo> {
  const dir = opts.store ? undefined : mkdtempSync(join(tmpdir(), 'tied-sso-'))
  const store = opts.store ?? fileStore({ directory: dir! })
  const urls = { portal: '', app: '' }
  const portal = serve(shared(store), async (req, res) => {
    const { session } = req
    if (req.method === 'POST' && req.url === '/login') {
      const uid = (await form(req)).get('uid')?.trim()
      if (uid) {
        session.uid = uid
        await regenerate(session) // a new id at login: the defence against session fixation
      }
      return redirect(res, '/')
    }
    if (req.method === 'POST' && req.url === '/logout') {
      if (session.uid !== undefined) await destroySessions(session.uid, { store, principal: 'uid' })
      return redirect(res, '/')
    }
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(
      session.uid === undefined
        ? page('Portal', `<form method="post" action="/login"><label>User <input name="uid"></label> <button>Log in</button></form>`)
        : page(
            'Portal',
            `<p>Logged in as <b id="user">${escape(session.uid)}</b>.</p><p><a id="app" href="${urls.app}/">Open the app</a></p>` +
              `<form method="post" action="/logout"><button id="logout">Log out everywhere</button></form>`,
          ),
    )
  })
  const app = serve({ ...shared(store), readOnly: true }, (req, res) => {
    const { uid } = req.session
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(
      uid === undefined
        ? page('App', `<p>Not logged in. <a id="login" href="${urls.portal}/">Log in at the portal</a></p>`)
        : page(
            'App',
            `<p>Hello <b id="user">${escape(uid)}</b>, from the portal's session.</p><p><a href="${urls.portal}/">Back to the portal</a></p>`,
          ),
    )
  })
  const listen = (server: http.Server, port: number) =>
    new Promise<string>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
    })
  urls.portal = await listen(portal, opts.portalPort ?? 0)
  urls.app = await listen(app, opts.appPort ?? 0)
  const stop = (server: http.Server) =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return {
    ...urls,
    async close() {
      await Promise.all([stop(portal), stop(app)])
      if (dir !== undefined) {
        await store.close()
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*[\\/]/, '/'))) {
  const demo = await startSsoDemo({ portalPort: Number(process.env.PORTAL_PORT ?? 3000), appPort: Number(process.env.APP_PORT ?? 3001) })
  console.log(`portal: ${demo.portal}/  (log in with any user name)\napp:    ${demo.app}/  (reads the portal's session)\nCtrl-C to stop`)
  process.once('SIGINT', () => void demo.close().then(() => process.exit(0)))
}
