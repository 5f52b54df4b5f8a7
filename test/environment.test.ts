/**
 * The TIED_SESSION_* environment as defaults of the library's options (src/environment.ts,
 * src/options.ts): the same variables as the `tied-session` command, an explicit option always
 * wins. Serial: the tests change process.env.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { closeStores, destroySessions, findSessions, memoryStore, tieSession, untie, type SessionError } from '../src/index.js'
import { rawCommand, useMemcached } from './helpers/memcached.js'

const test = anyTest.serial as TestFn<unknown>['serial']
const root = fileURLToPath(new URL('..', import.meta.url))

/**
 * Sets the variables for the test (closeStores() first: the library reads the environment once,
 * and again after closeStores()); restores them, and closes the stores they opened, after it.
 */
async function withEnv(t: ExecutionContext, vars: Record<string, string>): Promise<void> {
  await closeStores()
  const before = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]))
  Object.assign(process.env, vars)
  t.teardown(async () => {
    await closeStores()
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })
}

/** The value of `key` on the server at `port`, or undefined. */
async function valueOf(port: number, key: string): Promise<string | undefined> {
  const reply = await rawCommand(port, `get ${key}\r\n`)
  return reply === 'END\r\n' ? undefined : reply.split('\r\n')[1]
}

let users = 0
const user = () => `env-user-${users++}-${process.pid}`

test('TIED_SESSION_SERVERS, _NAMESPACE, _PRINCIPAL and _EXPIRES are the defaults; the command on the same host agrees', async (t) => {
  const server = await useMemcached(t)
  const env = {
    TIED_SESSION_SERVERS: server.address,
    TIED_SESSION_NAMESPACE: 'admin:',
    TIED_SESSION_PRINCIPAL: 'login',
    TIED_SESSION_EXPIRES: '120',
  }
  await withEnv(t, env)
  const uid = user()
  const s = await tieSession(undefined) // no options at all
  s.login = uid
  await untie(s)
  const id = s._session_id
  t.deepEqual(await findSessions(uid), [id], 'the index was kept (principal) on memcached (servers), and is found there')
  t.regex(
    (await valueOf(server.port, `admin:${id}`)) ?? '',
    new RegExp(`"login":"${uid}"`),
    'under the namespace, on the server named by the variable',
  )

  // the command, with the same environment and no flag, sees the same session and user
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'find', uid, '--json'], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  })
  t.is(cli.status, 0, cli.stderr)
  const found = JSON.parse(cli.stdout) as { sessions: Array<{ id: string; exp: number }> }
  t.deepEqual(
    found.sessions.map((e) => e.id),
    [id],
  )
  const left = found.sessions[0]!.exp - Date.now() / 1000
  t.true(left > 60 && left <= 121, `TIED_SESSION_EXPIRES: ${left} s left`)

  // an explicit option wins over its variable
  const mine = memoryStore()
  const other = await tieSession(undefined, { store: mine, namespace: 'x:', expires: 5 })
  await untie(other)
  t.truthy(await mine.get(`x:${other._session_id}`), 'option store and namespace win')
  t.is(await valueOf(server.port, `admin:${other._session_id}`), undefined)
  t.deepEqual(await findSessions(uid, { servers: server.address, namespace: 'elsewhere:' }), [], 'option namespace wins')
  t.is(await destroySessions(uid), 1)
})

test('TIED_SESSION_DIR: the file store in that directory; TIED_SESSION_TIMEOUT: the request timeout', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tied-session-env-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await withEnv(t, { TIED_SESSION_DIR: dir })
  const s = await tieSession(undefined)
  await untie(s)
  t.true(readdirSync(dir).includes(`${s._session_id}.session`))

  const stalled = await useMemcached(t)
  await stalled.pause()
  t.teardown(() => stalled.resume())
  await withEnv(t, { TIED_SESSION_DIR: '', TIED_SESSION_SERVERS: stalled.address, TIED_SESSION_TIMEOUT: '150' })
  const started = performance.now()
  const err = await t.throwsAsync<SessionError>(tieSession('a'.repeat(32)))
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
  t.regex(err!.message, /in 150 ms/)
  t.true(performance.now() - started < 1000)
  // an explicit requestTimeout wins
  const explicit = await t.throwsAsync<SessionError>(tieSession('a'.repeat(32), { servers: stalled.address, requestTimeout: 120 }))
  t.regex(explicit!.message, /in 120 ms/)
})

test('a malformed variable, or two stores named, is a TypeError naming the variable', async (t) => {
  for (const [vars, message] of [
    [{ TIED_SESSION_EXPIRES: 'soon' }, /TIED_SESSION_EXPIRES must be whole seconds/],
    [{ TIED_SESSION_TIMEOUT: '0' }, /TIED_SESSION_TIMEOUT must be milliseconds/],
    [{ TIED_SESSION_SERVERS: 'a b' }, /TIED_SESSION_SERVERS must be host:port/],
    [{ TIED_SESSION_SERVERS: '127.0.0.1:1', TIED_SESSION_DIR: '/tmp/x' }, /TIED_SESSION_SERVERS and TIED_SESSION_DIR name two stores/],
    [{ TIED_SESSION_LOCAL: '127.0.0.1:1' }, /TIED_SESSION_LOCAL needs servers/],
  ] as const) {
    const before = { ...process.env }
    await closeStores()
    Object.assign(process.env, vars)
    try {
      await t.throwsAsync(tieSession(undefined), { instanceOf: TypeError, message }, JSON.stringify(vars))
    } finally {
      for (const name of Object.keys(vars)) {
        if (before[name] === undefined) delete process.env[name]
        else process.env[name] = before[name]
      }
    }
  }
  // a store given as an option makes the store variables irrelevant
  await withEnv(t, { TIED_SESSION_SERVERS: '127.0.0.1:1', TIED_SESSION_DIR: '/tmp/x' })
  await untie(await tieSession(undefined, { store: memoryStore() }))
  t.pass()
})

test('findSessions and destroySessions without principal, or without a store, say so with a TypeError naming the option', async (t) => {
  const store = memoryStore()
  const s = await tieSession(undefined, { store, principal: 'uid' })
  s.uid = 'dwho'
  await untie(s)
  for (const call of [() => findSessions('dwho', { store }), () => destroySessions('dwho', { store })]) {
    await t.throwsAsync(call(), { instanceOf: TypeError, message: /\(\) needs option principal/ })
  }
  for (const call of [() => findSessions('dwho', { principal: 'uid' }), () => destroySessions('dwho', { principal: 'uid' })]) {
    await t.throwsAsync(call(), { instanceOf: TypeError, message: /\(\) needs option store or servers/ })
  }
  t.deepEqual(await findSessions('dwho', { store, principal: 'uid' }), [s._session_id])
  await withEnv(t, { TIED_SESSION_PRINCIPAL: 'uid' })
  t.is(await destroySessions('dwho', { store }), 1, 'TIED_SESSION_PRINCIPAL names the field')
})
