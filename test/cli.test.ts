/**
 * The `tied-session` command, as users run it: the built bin (dist/cli.js) in a child process,
 * against a temp file-store directory and real memcached servers.
 */
import { execFile, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { fileStore, md5Hex, memcachedStore, tieSession, untie } from '../src/index.js'
import { freePort, rawCommand, startMemcached, useMemcached, type MemcachedServer } from './helpers/memcached.js'

const test = anyTest as TestFn<unknown>

const root = fileURLToPath(new URL('..', import.meta.url))
const BIN = path.join(root, 'dist', 'cli.js')
const scratch = mkdtempSync(path.join(tmpdir(), 'tied-session-cli-'))
/** The environment of every run: no TIED_SESSION_* or colour settings from the caller, a temp TMPDIR. */
const baseEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^(TIED_SESSION_|NO_COLOR$|FORCE_COLOR$)/.test(name)),
)
baseEnv.TMPDIR = scratch

/** The newest modification time (ms) of the files under `dir`. */
function newest(dir: string): number {
  return Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile())
      .map((e) => statSync(path.join(e.parentPath, e.name)).mtimeMs),
  )
}

let server: MemcachedServer | undefined

test.before(async () => {
  // build once, and only when dist/ is older than the sources
  const built = (() => {
    try {
      return statSync(BIN).mtimeMs
    } catch {
      return 0
    }
  })()
  if (built < Math.max(newest(path.join(root, 'src')), statSync(path.join(root, 'package.json')).mtimeMs)) {
    const build = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8', timeout: 120_000 })
    if (build.status !== 0) throw new Error(`npm run build failed (${build.status ?? build.signal}):\n${build.stdout}\n${build.stderr}`)
  }
  server = await startMemcached()
})

test.after.always(async () => {
  await server?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

/** How a run of the bin ended. */
interface Run {
  code: number | null
  stdout: string
  stderr: string
  /** Milliseconds from spawn to exit. */
  ms: number
}

/** Children run at once: more only make each slower (and the timing tests meaningless). */
const SLOTS = 4
let running = 0
const queue: Array<() => void> = []

/** Runs `node dist/cli.js ...args`, at most SLOTS at a time; SIGKILLed after `timeoutMs` and in teardown if it still runs. */
async function cli(
  t: ExecutionContext,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; direct?: boolean } = {},
): Promise<Run> {
  if (running >= SLOTS) await new Promise<void>((resolve) => queue.push(resolve))
  running++
  try {
    return await spawnCli(t, args, opts)
  } finally {
    running--
    queue.shift()?.()
  }
}

function spawnCli(
  t: ExecutionContext,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; direct?: boolean },
): Promise<Run> {
  const started = performance.now()
  const [file, argv] = opts.direct ? [BIN, args] : [process.execPath, [BIN, ...args]]
  const child = spawn(file, argv, { cwd: root, env: { ...baseEnv, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
  const exited = new Promise<Run>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, ms: performance.now() - started })
    })
  })
  t.teardown(async () => {
    clearTimeout(timer)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  return exited
}

/** A new empty file-store directory, removed after the test. */
function storeDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(scratch, 'store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

let users = 0
/** A user id no other test uses (the memcached server is shared by the tests of this file). */
const user = (name: string) => `${name}-${users++}-${process.pid}`

/** Asserts a run's exit code, with its output in the failure message. */
function exits(t: ExecutionContext, run: Run, code: number): void {
  t.is(run.code, code, `exit ${run.code}, stdout:\n${run.stdout}\nstderr:\n${run.stderr}`)
}

/** Asserts that stderr is one line, `tied-session: ...`, with no stack trace. */
function oneLine(t: ExecutionContext, run: Run, match?: RegExp): void {
  const lines = run.stderr.trimEnd().split('\n')
  t.is(lines.length, 1, run.stderr)
  t.regex(lines[0]!, /^tied-session: \S/)
  t.notRegex(run.stderr, /^\s+at /m)
  if (match) t.regex(lines[0]!, match)
}

/**
 * The time limit `ms` for a run, plus how much longer than 300 ms node takes to start right now
 * (a bare --version): so that a loaded machine does not fail a test meant to catch hangs.
 */
/**
 * A time limit that allows for this machine's load: `ms` plus how much longer than 300 ms the
 * slowest of `parallel` concurrent `--version` runs took (as many as the runs it bounds).
 */
async function bound(t: ExecutionContext, parallel = 1): Promise<(ms: number) => number> {
  const runs = await Promise.all(Array.from({ length: parallel }, () => cli(t, ['--version'])))
  const startup = Math.max(...runs.map((run) => run.ms))
  return (ms) => ms + Math.max(0, startup - 300)
}

const json = (run: Run) => JSON.parse(run.stdout) as any
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[/

// ---- packaging, help, usage ----

test('the bin is built with its shebang, is executable, and runs by itself', async (t) => {
  t.true(readFileSync(BIN, 'utf8').startsWith('#!/usr/bin/env node\n'))
  t.not(statSync(BIN).mode & 0o111, 0)
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> }
  t.deepEqual(pkg.bin, { 'tied-session': './dist/cli.js' })
  const run = await cli(t, ['--version'], { direct: true })
  exits(t, run, 0)
  t.is(run.stdout, `tied-session ${pkg.version}\n`)
})

/**
 * A consumer project of the built package in `dir` (the package linked as node_modules/tied-session,
 * with this repository's @types), compiled with `tsc` under `compilerOptions`.
 */
function consumer(dir: string, type: 'commonjs' | 'module', files: Record<string, string>, compilerOptions: Record<string, unknown>) {
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true })
  symlinkSync(root, path.join(dir, 'node_modules', 'tied-session'))
  symlinkSync(path.join(root, 'node_modules', '@types'), path.join(dir, 'node_modules', '@types'))
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type }))
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text)
  const tsconfig = {
    compilerOptions: {
      strict: true,
      skipLibCheck: false,
      target: 'ES2022',
      lib: ['ES2023', 'ESNext.Disposable'],
      types: ['node'],
      outDir: 'out',
      ...compilerOptions,
    },
    files: Object.keys(files),
  }
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
  return node([path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir])
}

/** Runs node with `args` without blocking the other tests; resolves its exit code and output. */
async function node(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
}

const CONSUMER = (how: string) => `import { memoryStore, tieSession, untie, type Tied } from 'tied-session'
async function main(): Promise<void> {
  const s: Tied<{ n: number }> = await tieSession<{ n: number }>(undefined, { store: memoryStore() })
  s.n = 1
  await untie(s)
  console.log('${how}', s.n, s._session_id.length)
}
void main()
`

// serial: three tsc runs would slow the other tests' children past their time limits
test.serial('a TypeScript consumer compiles and runs under node16, nodenext (CommonJS and ESM) and bundler resolution', async (t) => {
  t.timeout(180_000)
  for (const mode of ['node16', 'nodenext'] as const) {
    // a CommonJS project: its .ts files are CommonJS (imports become require), its .mts files ESM
    const dir = mkdtempSync(path.join(scratch, `consumer-${mode}-`))
    const files = { 'index.ts': CONSUMER('require'), 'esm.mts': CONSUMER('import') }
    // node16 checks the package's declarations too (skipLibCheck false: @types/node costs seconds)
    const built = await consumer(dir, 'commonjs', files, { module: mode, moduleResolution: mode, skipLibCheck: mode === 'nodenext' })
    t.is(built.status, 0, `${mode}: ${built.stdout}${built.stderr}`)
    for (const [file, how] of [
      ['index.js', 'require'],
      ['esm.mjs', 'import'],
    ] as const) {
      const run = await node([path.join(dir, 'out', file)])
      t.is(run.stdout, `${how} 1 32\n`, `${mode} ${file}: ${run.stderr}`)
    }
  }
  // bundler resolution, with README's "Writing a store" snippet as a file of the project
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
  const snippet = /\n### Writing a store\n[^]*?```ts\n([^]*?)```/.exec(readme)?.[1]
  t.truthy(snippet, 'README has a "Writing a store" snippet')
  const useStore = `import { tieSession, untie } from 'tied-session'
import { mapStore } from './readme-store.js'
const store = mapStore()
const s = await tieSession<{ n: number }>(undefined, { store })
s.n = 2
await untie(s)
const again = await tieSession<{ n: number }>(s._session_id, { store })
console.log('readme store', again.n)
`
  const dir = mkdtempSync(path.join(scratch, 'consumer-bundler-'))
  const readmeDir = mkdtempSync(path.join(scratch, 'consumer-readme-'))
  const readmeBuilt = await consumer(
    readmeDir,
    'module',
    { 'readme-store.ts': snippet!, 'use-store.ts': useStore },
    { module: 'ESNext', moduleResolution: 'bundler', skipLibCheck: true },
  )
  t.is(readmeBuilt.status, 0, `README snippet: ${readmeBuilt.stdout}${readmeBuilt.stderr}`)
  const used = await node([path.join(readmeDir, 'out', 'use-store.js')])
  t.is(used.stdout, 'readme store 2\n', used.stderr)
  const built = await consumer(
    dir,
    'module',
    { 'index.ts': CONSUMER('bundler') },
    { module: 'ESNext', moduleResolution: 'bundler', skipLibCheck: true },
  )
  t.is(built.status, 0, `bundler: ${built.stdout}${built.stderr}`)
  const run = await node([path.join(dir, 'out', 'index.js')])
  t.is(run.stdout, 'bundler 1 32\n', run.stderr)
})

test('--help, help <command> and <command> --help explain with examples, on stdout, exit 0', async (t) => {
  const commands = ['new', 'show', 'set', 'unset', 'destroy', 'find', 'logout', 'list', 'sweep', 'ping', 'demo']
  const [main, viaHelp, ...each] = await Promise.all([
    cli(t, ['--help']),
    cli(t, ['help', 'set']),
    ...commands.map((command) => cli(t, [command, '-h'])),
  ])
  exits(t, main!, 0)
  t.regex(main!.stdout, /^Usage: tied-session \[store options\] <command>/)
  for (const command of commands) t.regex(main!.stdout, new RegExp(`^  ${command}\\b`, 'm'))
  for (const name of ['DIR', 'SERVERS', 'LOCAL', 'NAMESPACE', 'PRINCIPAL', 'EXPIRES']) t.true(main!.stdout.includes(`TIED_SESSION_${name}`))
  t.regex(
    main!.stdout,
    /Exit codes: 0 done, 1 not found \(session or user\), 2 bad usage or input, 3 store unreachable or failing,\n4 data the store holds but cannot be read/,
  )
  t.regex(main!.stdout, /Examples:\n {2}tied-session demo/)
  exits(t, viaHelp!, 0)
  t.regex(viaHelp!.stdout, /cart\.items\.0\.sku=42/)
  each.forEach((run, i) => {
    exits(t, run, 0)
    t.regex(run.stdout, new RegExp(`^Usage: tied-session \\[store options\\] ${commands[i]}`), commands[i])
    t.regex(run.stdout, /\nExamples:\n {2}tied-session /, commands[i])
    t.is(run.stderr, '')
  })
})

test('bad usage exits 2 with one error line, then the usage, on stderr', async (t) => {
  const dir = storeDir(t)
  const cases: Array<[args: string[], message: RegExp, usage: RegExp]> = [
    [[], /no command given/, /<command>/],
    [['bogus'], /unknown command "bogus"/, /<command>/],
    [['--nope', 'list'], /--nope/, /list \[--where/],
    [['show'], /show needs one session id/, /show <id>/],
    [['show', 'a', 'b'], /unexpected "b"/, /show <id>/],
    [['show', 'bad id!'], /invalid session id "bad id!"/, /show <id>/],
    [['set', 'abc'], /needs a session id and at least one path=value/, /set <id> path=value/],
    [['set', 'abc', 'novalue'], /expected path=value, got "novalue"/, /set <id>/],
    [['set', 'abc', 'a.__proto__.b=1'], /"__proto__" cannot be a path segment/, /set <id>/],
    [['set', 'abc', '_session_id=x'], /_session_id is read-only/, /set <id>/],
    [['--expires', 'soon', 'new'], /--expires takes whole seconds/, /new \[path=value/],
    [['show', 'abc', '--where', 'a=b'], /--where is an option of list only/, /show <id>/],
    [['--dir', dir, '--servers', '127.0.0.1:1', 'list'], /--dir and --servers name two stores/, /list/],
    [['--servers', 'a b', 'ping'], /--servers takes host:port .*got "a b"/, /ping/],
    [['--namespace', 'a b', 'list'], /--namespace must be at most 64 printable ASCII characters/, /list/],
    [['help', 'nothing'], /unknown command "nothing"/, /<command>/],
  ]
  const runs = await Promise.all(cases.map(([args]) => cli(t, args, { env: { TIED_SESSION_DIR: dir } })))
  runs.forEach((run, i) => {
    const [args, message, usage] = cases[i]!
    exits(t, run, 2)
    const [first, blank, ...rest] = run.stderr.split('\n')
    t.regex(first!, /^tied-session: /, args.join(' '))
    t.regex(first!, message, args.join(' '))
    t.is(blank, '')
    t.regex(rest.join('\n'), /^Usage: tied-session /)
    t.regex(rest[0]!, usage, args.join(' '))
    t.is(run.stdout, '')
    t.notRegex(run.stderr, /^\s+at /m)
  })
  const local = await cli(t, ['list'], { env: { TIED_SESSION_LOCAL: '127.0.0.1:1' } })
  exits(t, local, 2)
  t.regex(local.stderr, /^tied-session: TIED_SESSION_LOCAL needs --servers/)
})

// ---- one session ----

test('new, show, set and unset a session on the file store (human and --json)', async (t) => {
  const dir = storeDir(t)
  const created = await cli(t, ['--dir', dir, 'new', 'uid=dwho', 'cart.items.0.sku=42', 'lang=fr', 'zip="75001"', 'note=hello world'])
  exits(t, created, 0)
  t.regex(created.stdout, /^[0-9a-f]{32}\n$/)
  const id = created.stdout.trim()

  const shown = await cli(t, ['--dir', dir, 'show', id, '--json'])
  exits(t, shown, 0)
  t.is(typeof json(shown)._utime, 'number')
  t.deepEqual(json(shown), {
    _session_id: id,
    _utime: json(shown)._utime,
    uid: 'dwho',
    cart: { items: [{ sku: 42 }] },
    lang: 'fr',
    zip: '75001',
    note: 'hello world',
    uid_MD5: md5Hex('dwho'),
    _index_at: json(shown)._index_at,
  })
  t.true(Math.abs(json(shown)._index_at - Date.now() / 1000) < 60, '_index_at: when the user index was written (Unix seconds)')

  const set = await cli(t, ['--dir', dir, 'set', id, 'cart.items.0.qty=2', 'cart.items.1={"sku":7}', 'prefs.dark=true', 'lang=null'])
  exits(t, set, 0)
  t.is(set.stdout, `updated ${id}: set cart.items.0.qty, cart.items.1, prefs.dark, lang\n`)
  const setJson = await cli(t, ['--dir', dir, 'set', id, 'visits=1', '--json'])
  exits(t, setJson, 0)
  t.like(json(setJson), { id, data: { visits: 1, cart: { items: [{ sku: 42, qty: 2 }, { sku: 7 }] }, prefs: { dark: true }, lang: null } })

  const unset = await cli(t, ['--dir', dir, 'unset', id, 'cart.items.0', 'note', 'not.there'])
  exits(t, unset, 0)
  t.is(unset.stdout, `updated ${id}: removed cart.items.0, note; not there: not.there\n`)
  const unsetJson = await cli(t, ['--dir', dir, 'unset', id, 'prefs', '--json'])
  t.like(json(unsetJson), { id, removed: ['prefs'], absent: [] })

  const table = await cli(t, ['--dir', dir, 'show', id])
  exits(t, table, 0)
  t.notRegex(table.stdout, ANSI) // not a terminal: no colour
  const lines = table.stdout.trimEnd().split('\n')
  t.regex(lines[0]!, /^PATH +VALUE$/)
  const valueAt = lines[0]!.indexOf('VALUE')
  for (const line of lines) t.regex(line.slice(valueAt - 1, valueAt + 1), /^ \S$/, `aligned: ${line}`) // one column of values
  const rows = Object.fromEntries(lines.slice(1).map((line) => [line.slice(0, valueAt).trim(), line.slice(valueAt)]))
  t.deepEqual(rows, {
    _session_id: id,
    _utime: rows._utime,
    uid: 'dwho',
    'cart.items.0.sku': '7',
    lang: 'null',
    zip: '"75001"', // a string that reads as a number is quoted, as set takes it
    uid_MD5: md5Hex('dwho'),
    _index_at: rows._index_at,
    visits: '1',
  })
  t.regex(rows._index_at!, /^\d{10}$/)
  t.regex(rows._utime!, /^\d{10}$/)
})

test('show, set and unset of an unknown session exit 1 with one line', async (t) => {
  const dir = storeDir(t)
  const id = 'f'.repeat(32)
  const runs = await Promise.all([
    cli(t, ['--dir', dir, 'show', id]),
    cli(t, ['--dir', dir, 'set', id, 'a=1']),
    cli(t, ['--dir', dir, 'unset', id, 'a']),
  ])
  for (const run of runs) {
    exits(t, run, 1)
    oneLine(t, run, new RegExp(`session ${id} not found`))
    t.notRegex(run.stderr, /tie a new session|id undefined/) // the library's advice to programs is not for operators
    t.is(run.stdout, '')
  }
  const asJson = await cli(t, ['--dir', dir, 'show', id, '--json'])
  exits(t, asJson, 1)
  t.deepEqual(json(asJson), {
    error: { code: 'ERR_SESSION_NOT_FOUND', message: `session ${id} not found: it does not exist or has expired`, exit: 1 },
  })
  const debug = await cli(t, ['--dir', dir, 'show', id, '--debug'])
  exits(t, debug, 1)
  t.regex(debug.stderr, /^tied-session: session f+ not found/)
  t.regex(debug.stderr, /^\s+at /m) // --debug: the stack
})

test('destroy takes several ids; one that is not there makes exit 1', async (t) => {
  const dir = storeDir(t)
  const ids = await Promise.all([1, 2, 3].map(async (n) => (await cli(t, ['--dir', dir, 'new', `n=${n}`])).stdout.trim()))
  const missing = '0'.repeat(32)
  const both = await cli(t, ['--dir', dir, 'destroy', ids[0]!, ids[1]!])
  exits(t, both, 0)
  t.is(both.stdout, `destroyed ${ids[0]}\ndestroyed ${ids[1]}\n`)
  const partly = await cli(t, ['--dir', dir, 'destroy', ids[2]!, missing, '--json'])
  exits(t, partly, 1)
  t.like(json(partly), { destroyed: [ids[2]], notFound: [missing], error: { code: 'ERR_NOT_FOUND', exit: 1 } })
  oneLine(t, partly, new RegExp(`not found.*${missing}`))
  exits(t, await cli(t, ['--dir', dir, 'show', ids[0]!]), 1)
})

test("destroy of a user index key's id deletes nothing and says the session does not exist", async (t) => {
  const dir = storeDir(t)
  const id = (await cli(t, ['--dir', dir, 'new', 'uid=ines'])).stdout.trim()
  const indexKey = md5Hex('ines') // holds the id of ines's latest session, and looks like a session id
  const run = await cli(t, ['--dir', dir, 'destroy', indexKey, '--json'])
  exits(t, run, 1)
  t.like(json(run), { destroyed: [], notFound: [indexKey] })
  const found = await cli(t, ['--dir', dir, 'find', 'ines', '--json'])
  exits(t, found, 0)
  t.true(JSON.stringify(json(found)).includes(id), 'the index still finds the session')
})

// ---- a user's sessions ----

test("find lists a user's sessions with expiry and size; a user with none exits 1", async (t) => {
  const dir = storeDir(t)
  const ids = new Set<string>()
  const before = Math.floor(Date.now() / 1000)
  for (const args of [
    ['--expires', '600', 'new', 'uid=erin'],
    ['new', 'uid=erin', 'cart.items.0.sku=42'],
    ['--expires', '0', 'new', 'uid=erin'],
  ]) {
    ids.add((await cli(t, ['--dir', dir, ...args])).stdout.trim())
  }
  const other = (await cli(t, ['--dir', dir, 'new', 'uid=frank'])).stdout.trim()
  const after = Math.ceil(Date.now() / 1000)

  const found = await cli(t, ['--dir', dir, 'find', 'erin', '--json'])
  exits(t, found, 0)
  const { user: who, sessions } = json(found) as {
    user: string
    sessions: Array<{ id: string; exp: number | null; expires: string | null; size: number }>
  }
  t.is(who, 'erin')
  t.deepEqual(sessions.map((s) => s.id).sort(), [...ids].sort())
  t.false(sessions.some((s) => s.id === other))
  const store = fileStore({ directory: dir })
  t.teardown(() => store.close())
  for (const s of sessions) t.is(s.size, Buffer.byteLength((await store.get(s.id))!.value), 'size = stored bytes')
  const [never, day, tenMinutes] = [...ids].reverse().map((id) => sessions.find((s) => s.id === id)!)
  t.is(never!.exp, 0)
  t.is(never!.expires, 'never')
  const within = (exp: number | null, ttl: number) => exp !== null && exp >= before + ttl && exp <= after + ttl
  t.true(within(day!.exp, 86400), `default expiry: ${day!.exp}`)
  t.true(within(tenMinutes!.exp, 600), `--expires 600: ${tenMinutes!.exp}`)
  t.is(tenMinutes!.expires, new Date(tenMinutes!.exp! * 1000).toISOString())

  const table = await cli(t, ['--dir', dir, 'find', 'erin'])
  exits(t, table, 0)
  const lines = table.stdout.trimEnd().split('\n')
  t.regex(lines[0]!, /^ID +EXPIRES +SIZE$/)
  t.is(lines.length, 5)
  t.regex(
    lines.find((l) => l.startsWith(never!.id))!,
    / never +\d+ B$/,
  )
  t.regex(
    lines.find((l) => l.startsWith(tenMinutes!.id))!,
    / \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (9m|10m)\d*s?\) +\d+ B$/,
  )
  t.is(lines[4], '3 sessions of erin')

  const none = await cli(t, ['--dir', dir, 'find', 'nobody'])
  exits(t, none, 1)
  oneLine(t, none, /no session found for user "nobody"/)
  const noneJson = await cli(t, ['--dir', dir, 'find', 'nobody', '--json'])
  exits(t, noneJson, 1)
  t.like(json(noneJson), { user: 'nobody', sessions: [], error: { code: 'ERR_NOT_FOUND', exit: 1 } })
})

test('logout destroys every session of a user with several and prints how many', async (t) => {
  const dir = storeDir(t)
  const mine = await Promise.all([1, 2, 3].map(async (n) => (await cli(t, ['--dir', dir, 'new', 'uid=gina', `n=${n}`])).stdout.trim()))
  const theirs = (await cli(t, ['--dir', dir, 'new', 'uid=hugo'])).stdout.trim()

  const out = await cli(t, ['--dir', dir, 'logout', 'gina'])
  exits(t, out, 0)
  t.is(out.stdout, 'logged out gina: destroyed 3 sessions\n')
  for (const id of mine) exits(t, await cli(t, ['--dir', dir, 'show', id]), 1)
  exits(t, await cli(t, ['--dir', dir, 'find', 'gina']), 1)
  exits(t, await cli(t, ['--dir', dir, 'show', theirs]), 0)

  // a user with no session is not found, for logout as for find
  const again = await cli(t, ['--dir', dir, 'logout', 'gina', '--json'])
  exits(t, again, 1)
  t.like(json(again), { user: 'gina', destroyed: 0, error: { code: 'ERR_NOT_FOUND', exit: 1 } })
  oneLine(t, again, /no session found for user "gina"/)
  const nobody = await cli(t, ['--dir', dir, 'logout', 'nobody'])
  exits(t, nobody, 1)
  t.is(nobody.stdout, '')
  t.deepEqual(json(await cli(t, ['--dir', dir, 'logout', 'hugo', '--json'])), { user: 'hugo', destroyed: 1 })
})

// ---- the whole store ----

test('list walks the file store, leaves index keys out, and filters with --where', async (t) => {
  const dir = storeDir(t)
  const make = async (...args: string[]) => (await cli(t, ['--dir', dir, 'new', ...args])).stdout.trim()
  const [a1, a2, b, anon] = await Promise.all([
    make('uid=alice', 'cart.items.0.sku=42'),
    make('uid=alice', 'code="007"'),
    make('uid=bob', 'cart.items.0.sku=42'),
    make('visits=3'),
  ])
  const all = await cli(t, ['--dir', dir, 'list', '--json'])
  exits(t, all, 0)
  const listed = json(all).sessions as Array<{ id: string; user: unknown; size: number; data: Record<string, unknown> }>
  t.deepEqual(listed.map((s) => s.id).sort(), [a1, a2, b, anon].sort())
  const anonData = listed.find((s) => s.id === anon)?.data
  t.deepEqual(anonData, { _session_id: anon, _utime: anonData?._utime, visits: 3 })
  t.is(typeof anonData?._utime, 'number')
  t.is(listed.find((s) => s.id === anon)?.user, null)
  t.is(listed.find((s) => s.id === a1)?.user, 'alice')
  // the file store holds the index too: latest-session keys (md5 of the user) and the users' lists
  const files = readdirSync(dir).filter((f) => f.endsWith('.session'))
  t.true(files.length > 4)
  t.true(files.includes(`${md5Hex('alice')}.session`))

  const human = await cli(t, ['--dir', dir, 'list'])
  exits(t, human, 0)
  t.notRegex(human.stdout, ANSI)
  const lines = human.stdout.trimEnd().split('\n')
  t.regex(lines[0]!, /^ID +USER +SIZE +KEYS$/)
  t.is(lines.length, 6)
  t.regex(
    lines.find((l) => l.startsWith(a1))!,
    new RegExp(`^${a1}  alice +\\d+ B  cart$`),
  )
  t.regex(
    lines.find((l) => l.startsWith(anon))!,
    new RegExp(`^${anon}  - +\\d+ B  visits$`),
  )
  t.is(lines[5], '4 sessions')

  const where = async (...filters: string[]) => {
    const run = await cli(t, ['--dir', dir, 'list', ...filters.flatMap((f) => ['--where', f]), '--json'])
    exits(t, run, 0)
    return (json(run).sessions as Array<{ id: string }>).map((s) => s.id).sort()
  }
  t.deepEqual(await where('uid=alice'), [a1, a2].sort())
  t.deepEqual(await where('cart.items.0.sku=42'), [a1, b].sort())
  t.deepEqual(await where('uid=alice', 'cart.items.0.sku=42'), [a1])
  t.deepEqual(await where('code=007'), [a2]) // the text matches a string
  t.deepEqual(await where('code="007"'), [a2]) // so does its JSON
  t.deepEqual(await where('visits=3'), [anon])
  t.deepEqual(await where('uid=carol'), [])
  const filtered = await cli(t, ['--dir', dir, 'list', '--where', 'uid=bob'])
  t.regex(filtered.stdout, /\n1 session matching uid=bob\n$/)
})

test('sweep removes expired sessions and says how many', async (t) => {
  const dir = storeDir(t)
  const short = await Promise.all(
    [1, 2, 3].map(async (n) => (await cli(t, ['--dir', dir, '--expires', '1', 'new', `n=${n}`])).stdout.trim()),
  )
  const long = (await cli(t, ['--dir', dir, 'new', 'n=4'])).stdout.trim()
  t.is(short.length, 3)
  t.is(readdirSync(dir).filter((f) => f.endsWith('.session')).length, 4)
  await new Promise((resolve) => setTimeout(resolve, 1100))

  const swept = await cli(t, ['--dir', dir, 'sweep', '--json'])
  exits(t, swept, 0)
  t.deepEqual(json(swept), { removed: 3, directory: dir })
  t.is(swept.stderr, '') // no progress bar off a terminal
  t.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.session')),
    [`${long}.session`],
  )
  const again = await cli(t, ['--dir', dir, 'sweep'])
  exits(t, again, 0)
  t.is(again.stdout, `removed 0 expired keys (sessions and index entries) from ${dir}\n`)
})

test('the store options come from TIED_SESSION_* variables, and a flag wins', async (t) => {
  const [one, two] = [storeDir(t), storeDir(t)]
  const env = { TIED_SESSION_DIR: one, TIED_SESSION_PRINCIPAL: 'login', TIED_SESSION_NAMESPACE: 'app1-' }
  const id = (await cli(t, ['new', 'login=ivan'], { env })).stdout.trim()
  t.regex(id, /^[0-9a-f]{32}$/)
  t.true(readdirSync(one).includes(`app1-${id}.session`))
  exits(t, await cli(t, ['show', id], { env }), 0)
  t.deepEqual(
    json(await cli(t, ['find', 'ivan', '--json'], { env })).sessions.map((s: { id: string }) => s.id),
    [id],
  )
  exits(t, await cli(t, ['--dir', two, 'show', id], { env }), 1) // --dir wins over TIED_SESSION_DIR
  exits(t, await cli(t, ['--namespace', 'app2-', 'show', id], { env }), 1)
  const bad = await cli(t, ['show', id], { env: { ...env, TIED_SESSION_EXPIRES: 'soon' } })
  exits(t, bad, 2)
  t.regex(bad.stderr, /^tied-session: TIED_SESSION_EXPIRES takes whole seconds/)
  // a --dir flag also overrides memcached servers named by the environment
  exits(t, await cli(t, ['--dir', one, 'show', id], { env: { ...env, TIED_SESSION_SERVERS: '127.0.0.1:1' } }), 0)
})

test('demo runs on the embedded file store with no server and narrates each step', async (t) => {
  const tmp = storeDir(t)
  const run = await cli(t, ['demo'], { env: { TMPDIR: tmp } }) // the default store: a folder in TMPDIR
  exits(t, run, 0)
  t.is(run.stderr, '')
  t.regex(run.stdout, new RegExp(`^tied-session demo on the file store in ${tmp}/tied-session-\\S+ \\(no server needed\\)\n`))
  const steps = run.stdout.split('\n').filter((l) => /^\d\. /.test(l))
  t.is(steps.length, 6)
  t.regex(steps[0]!, /created session [0-9a-f]{32} and set uid = "dwho-demo-[0-9a-f]{6}"/)
  t.regex(steps[1]!, /nested data/)
  t.regex(steps[2]!, /A second process \(pid \d+\) tied the session by its id/)
  t.regex(steps[3]!, /2 items \(skus 42 and 7\), visits = 2/)
  t.regex(steps[4]!, /findSessions\("dwho-demo-[0-9a-f]{6}"\) .*found the session/)
  t.regex(steps[5]!, /destroySessions\("dwho-demo-[0-9a-f]{6}"\) logged the user out: 1 session destroyed/)
  // the hint names a command that works from a clone as from an install
  t.regex(run.stdout, /\nDone\. Try it by hand: npx tied-session new uid=dwho cart\.items\.0\.sku=42, then npx tied-session find dwho\.\n/)
  t.notRegex(run.stdout, /(^|[^x] )tied-session (new|find|--help)/m)

  const dir = storeDir(t)
  const quiet = await cli(t, ['--dir', dir, 'demo', '--json'])
  exits(t, quiet, 0)
  const report = json(quiet) as { user: string; id: string; steps: string[] }
  t.regex(report.user, /^dwho-demo-[0-9a-f]{6}$/) // a user of its own: never a real user's sessions
  t.is(report.steps.length, 6)
  t.deepEqual(json(await cli(t, ['--dir', dir, 'list', '--json'])).sessions, []) // logged out: nothing left
})

// ---- memcached ----

test('new, show, set, find and logout on memcached', async (t) => {
  const servers = ['--servers', server!.address]
  const who = user('jane')
  const id = (await cli(t, [...servers, 'new', `uid=${who}`, 'cart.items.0.sku=42'])).stdout.trim()
  t.regex(id, /^[0-9a-f]{32}$/)
  exits(t, await cli(t, [...servers, 'set', id, 'cart.items.0.qty=3']), 0)
  t.like(json(await cli(t, [...servers, 'show', id, '--json'])), { uid: who, cart: { items: [{ sku: 42, qty: 3 }] } })
  const second = (await cli(t, [...servers, 'new', `uid=${who}`])).stdout.trim()
  const found = json(await cli(t, [...servers, 'find', who, '--json'])).sessions as Array<{ id: string; size: number }>
  t.deepEqual(found.map((s) => s.id).sort(), [id, second].sort())
  t.true(found.every((s) => s.size > 0))
  const out = await cli(t, [...servers, 'logout', who])
  exits(t, out, 0)
  t.is(out.stdout, `logged out ${who}: destroyed 2 sessions\n`)
  exits(t, await cli(t, [...servers, 'show', id]), 1)
})

test('list on memcached lists every session the test created and no index key', async (t) => {
  const store = memcachedStore({ servers: server!.address, requestTimeout: 10_000 })
  t.teardown(() => store.close())
  const who = [user('kim'), user('lou')]
  const created: string[] = []
  for (let i = 0; i < 12; i++) {
    const s = await tieSession(undefined, { store, principal: 'uid' })
    s.uid = who[i % 2]
    s.n = i
    created.push(s._session_id)
    await untie(s)
  }
  const run = await cli(t, ['--servers', server!.address, 'list', '--json'])
  exits(t, run, 0)
  const listed = json(run).sessions as Array<{ id: string; data: Record<string, unknown> }>
  const ids = new Set(listed.map((s) => s.id))
  for (const id of created) t.true(ids.has(id), `session ${id} listed`)
  for (const u of who) t.false(ids.has(md5Hex(u)), 'the latest-session key of a user is not a session')
  t.true(listed.every((s) => s.data._session_id === s.id))

  const kims = await cli(t, ['--servers', server!.address, 'list', '--where', `uid=${who[0]}`])
  exits(t, kims, 0)
  const lines = kims.stdout.trimEnd().split('\n')
  t.is(lines.at(-1), `6 sessions matching uid=${who[0]}`)
  t.deepEqual(
    lines
      .slice(1, -1)
      .map((l) => l.split(' ')[0])
      .sort(),
    created.filter((_, i) => i % 2 === 0).sort(),
  )
})

test('list on a memcached that refuses lru_crawler metadump says why, exit 3', async (t) => {
  const refusing = await useMemcached(t, { extraArgs: ['-X'] })
  const run = await cli(t, ['--servers', refusing.address, 'list'])
  exits(t, run, 3)
  oneLine(
    t,
    run,
    /cannot list sessions: memcached 127\.0\.0\.1:\d+ \(version [\d.]+\) refuses lru_crawler metadump \("ERROR metadump not allowed"\).*-X.*find <user>/,
  )
  t.is(run.stdout, '')
})

test('sweep on memcached says that memcached expires items itself', async (t) => {
  const run = await cli(t, ['--servers', server!.address, 'sweep'])
  exits(t, run, 0)
  t.is(run.stdout, 'memcached expires items itself; there is nothing to sweep\n')
  t.deepEqual(json(await cli(t, ['--servers', server!.address, 'sweep', '--json'])), {
    removed: 0,
    note: 'memcached expires items itself; there is nothing to sweep',
  })
})

test('ping reports version, latency, items and memory of the principal and local servers', async (t) => {
  const local = await useMemcached(t, { extraArgs: ['-l', '::1'] })
  const localV6 = `[::1]:${local.port}` // the local server by its IPv6 loopback address
  const args = ['--servers', server!.address, '--local', `[::1]:${local.port}`, 'ping']
  const run = await cli(t, [...args, '--json'])
  exits(t, run, 0)
  const probes = json(run).servers as Array<Record<string, unknown>>
  t.deepEqual(
    probes.map((p) => [p.role, p.server, p.up]),
    [
      ['principal', server!.address, true],
      ['local', localV6, true],
    ],
  )
  const stats = await local.stats()
  for (const p of probes) {
    t.is(p.version, stats.version)
    t.true(typeof p.latencyMs === 'number' && p.latencyMs > 0 && p.latencyMs < 1000)
    t.true(typeof p.items === 'number')
    t.true(typeof p.bytes === 'number')
    t.is(p.limitMaxbytes, 64 * 1024 * 1024)
  }
  const human = await cli(t, args)
  exits(t, human, 0)
  const lines = human.stdout.trimEnd().split('\n')
  t.regex(lines[0]!, /^ROLE +SERVER +VERSION +LATENCY +ITEMS +MEMORY +STATUS$/)
  t.regex(lines[1]!, new RegExp(`^principal  ${server!.address} +[\\d.]+ +[\\d.]+ ms +\\d+  [\\d.]+ \\S+ / 64\\.0 MiB \\(\\d+%\\) +up$`))
  t.regex(lines[2]!, new RegExp(`^local +${localV6.replace(/[[\]]/g, '\\$&')} `))
  t.notRegex(human.stdout, ANSI)

  const dir = storeDir(t)
  const file = await cli(t, ['--dir', dir, 'ping'])
  exits(t, file, 0)
  t.regex(file.stdout, new RegExp(`^STORE +DIRECTORY +LATENCY +STATUS\nfile +${dir} +[\\d.]+ ms +up\n$`))
})

// The timing tests run serially, before the others, and allow for a machine slower than usual.
test.serial('ping reports a down server as down and exits 3', async (t) => {
  const port = await freePort()
  const within = await bound(t)
  const run = await cli(t, ['--servers', server!.address, '--local', `127.0.0.1:${port}`, 'ping'])
  exits(t, run, 3)
  t.true(run.ms < within(2000), `${run.ms} ms`)
  const lines = run.stdout.trimEnd().split('\n')
  t.regex(lines[1]!, / up$/)
  t.regex(lines[2]!, new RegExp(`^local +127\\.0\\.0\\.1:${port} .* down: connection refused$`))
  oneLine(t, run, new RegExp(`1 of 2 servers down: 127\\.0\\.0\\.1:${port} \\(connection refused\\)`))
  const json1 = json(await cli(t, ['--servers', `127.0.0.1:${port}`, 'ping', '--json']))
  t.like(json1.servers[0], { role: 'principal', up: false, error: 'connection refused', version: null })
})

test.serial('an unreachable or stalled server: exit 3 within 2 s, one clear line, no stack', async (t) => {
  const down = `127.0.0.1:${await freePort()}`
  const id = 'a'.repeat(32)
  const commands = [
    ['new', 'uid=x'],
    ['show', id],
    ['set', id, 'a=1'],
    ['unset', id, 'a'],
    ['destroy', id],
    ['find', 'x'],
    ['logout', 'x'],
    ['list'],
    ['demo'],
  ]
  const within = await bound(t, commands.length)
  const runs = await Promise.all(commands.map((args) => cli(t, ['--servers', down, ...args])))
  runs.forEach((run, i) => {
    exits(t, run, 3)
    t.true(run.ms < within(2000), `${commands[i]!.join(' ')}: ${run.ms} ms`)
    oneLine(t, run, new RegExp(`memcached ${down.replace(/\./g, '\\.')}`))
  })

  const stalled = await useMemcached(t)
  await stalled.pause() // accepts connections, answers nothing
  t.teardown(() => stalled.resume())
  const run = await cli(t, ['--servers', stalled.address, 'show', id])
  exits(t, run, 3)
  t.true(run.ms < within(2500), `${run.ms} ms`)
  oneLine(t, run, /no answer from memcached .* in 1000 ms/)
})

test('demo runs on memcached with --servers', async (t) => {
  const run = await cli(t, ['--servers', server!.address, 'demo'])
  exits(t, run, 0)
  t.regex(run.stdout, new RegExp(`^tied-session demo on memcached ${server!.address}\n`))
  t.is(run.stdout.split('\n').filter((l) => /^\d\. /.test(l)).length, 6)
})

// ---- issue 17: what operators meet ----

/** The seconds `id` of `who` has left, as `find --json` reads the user's index. */
async function secondsLeft(t: ExecutionContext, store: string[], who: string, id: string): Promise<number> {
  const found = json(await cli(t, [...store, 'find', who, '--json'])).sessions as Array<{ id: string; exp: number }>
  const exp = found.find((s) => s.id === id)!.exp
  return exp === 0 ? 0 : exp - Date.now() / 1000
}

for (const kind of ['file', 'memcached'] as const) {
  test(`set and unset keep the remaining lifetime unless --expires is given (${kind})`, async (t) => {
    const store = kind === 'file' ? ['--dir', storeDir(t)] : ['--servers', server!.address]
    const who = user('lena')
    const id = (await cli(t, [...store, '--expires', '600', 'new', `uid=${who}`])).stdout.trim()
    exits(t, await cli(t, [...store, 'set', id, 'cart.items.0.sku=42']), 0)
    exits(t, await cli(t, [...store, 'set', id, `uid=${who}`, 'moved=1']), 0) // the index is rewritten with the lifetime left
    exits(t, await cli(t, [...store, 'unset', id, 'moved']), 0)
    const left = await secondsLeft(t, store, who, id)
    t.true(left > 300 && left <= 601, `${left} s left after set and unset (the app made it for 600 s)`)
    // an explicit --expires restarts the lifetime
    exits(t, await cli(t, [...store, '--expires', '20', 'set', id, `uid=${who}`, 'moved=2']), 0)
    const short = await secondsLeft(t, store, who, id)
    t.true(short > 5 && short <= 21, `--expires 20 restarts the lifetime: ${short} s left`)
    // never-expiring sessions stay so
    const forever = (await cli(t, [...store, '--expires', '0', 'new', `uid=${who}`])).stdout.trim()
    exits(t, await cli(t, [...store, 'set', forever, 'a=1']), 0)
    t.is(await secondsLeft(t, store, who, forever), 0)
  })
}

test("list, show and find over another application's items in the namespace: listed apart, never an abort or advice to delete", async (t) => {
  const own = await useMemcached(t)
  const servers = ['--servers', own.address]
  const who = user('mona')
  const ours = (await cli(t, [...servers, 'new', `uid=${who}`, 'n=1'])).stdout.trim()
  // connect-memcached writes JSON with flags 0; other clients write flags (Perl's Storable: 1)
  const flagged = 'c'.repeat(32)
  const express = 'sess_' + 'd'.repeat(20)
  const text = 'e'.repeat(20)
  const put = async (key: string, flags: number, value: string) =>
    t.is(await rawCommand(own.port, `set ${key} ${flags} 0 ${Buffer.byteLength(value)}\r\n${value}\r\n`), 'STORED\r\n')
  await put(flagged, 1, 'pst0\x04\x08')
  await put(express, 0, '{"cookie":{"originalMaxAge":null},"user":"x"}')
  await put(text, 0, 'hello')

  const listed = await cli(t, [...servers, 'list'])
  exits(t, listed, 0)
  const lines = listed.stdout.trimEnd().split('\n')
  t.regex(lines[1]!, new RegExp(`^${ours}  ${who} `))
  t.is(lines[2], '1 session')
  t.is(lines[3], 'not a tied-session session (3 items in this namespace, left as they are)')
  t.is(listed.stderr, '')
  const listedJson = json(await cli(t, [...servers, 'list', '--json']))
  t.deepEqual(
    listedJson.sessions.map((s: { id: string }) => s.id),
    [ours],
  )
  t.is(listedJson.foreign, 3)

  for (const args of [
    ['show', flagged],
    ['find', who],
  ]) {
    // find still works: the index lists only our session
    const run = await cli(t, [...servers, ...args])
    if (args[0] === 'find') {
      exits(t, run, 0)
      continue
    }
    exits(t, run, 4)
    oneLine(
      t,
      run,
      // an item with flags is read as Perl's forms would be (flags 1: Storable); this one is none of them
      /cannot read; it is not a tied-session session this command can read \(left as it is\)$/,
    )
    t.notRegex(run.stderr, /delete it|destroy it/)
  }
  const shownJson = await cli(t, [...servers, 'show', flagged, '--json'])
  exits(t, shownJson, 4)
  t.like(json(shownJson), { error: { code: 'ERR_CORRUPT', exit: 4 } })
  t.is(await rawCommand(own.port, `get ${flagged}\r\n`), `VALUE ${flagged} 1 6\r\npst0\x04\x08\r\nEND\r\n`, 'left as it was')
})

test('--json: one JSON document on stdout for every outcome, errors included; a data error is one line', async (t) => {
  const dir = storeDir(t)
  const id = (await cli(t, ['--dir', dir, 'new', 'cart.items.0.sku=1'])).stdout.trim()
  const down = `127.0.0.1:${await freePort()}`
  const cases: Array<[args: string[], exit: number, code: string]> = [
    [['--dir', dir, 'show', id, '--json'], 0, ''],
    [['--dir', dir, 'bogus', '--json'], 2, 'ERR_USAGE'],
    [['--dir', dir, '--nope', 'list', '--json'], 2, 'ERR_USAGE'],
    [['--dir', dir, 'show', 'bad id!', '--json'], 2, 'ERR_USAGE'],
    [['--dir', dir, 'set', id, 'cart.items.5=1', '--json'], 2, 'ERR_USAGE'],
    [['--dir', dir, 'show', '0'.repeat(32), '--json'], 1, 'ERR_SESSION_NOT_FOUND'],
    [['--dir', dir, 'find', 'nobody', '--json'], 1, 'ERR_NOT_FOUND'],
    [['--servers', down, 'show', id, '--json'], 3, 'ERR_STORE_UNAVAILABLE'],
    [['--servers', down, 'ping', '--json'], 3, 'ERR_STORE_UNAVAILABLE'],
  ]
  const runs = await Promise.all(cases.map(([args]) => cli(t, args)))
  runs.forEach((run, i) => {
    const [args, exit, code] = cases[i]!
    exits(t, run, exit)
    const doc = JSON.parse(run.stdout) as { error?: { code: string; message: string; exit: number } } // one document, nothing else
    if (exit === 0) {
      t.is(doc.error, undefined)
      t.is(run.stderr, '')
      return
    }
    t.is(doc.error?.code, code, args.join(' '))
    t.is(doc.error?.exit, exit)
    t.regex(doc.error!.message, /^\S/)
    oneLine(t, run) // and the line on stderr, with no usage text
    t.is(`tied-session: ${doc.error!.message}`, run.stderr.trimEnd())
  })

  // without --json: a data error is one line on stderr, not the usage text
  for (const args of [
    ['set', id, 'cart.items.5=1'],
    ['set', id, 'cart.items.x=1'],
    ['set', id, 'cart.items.0.sku.deeper=1'],
    ['new', 'cart.items.3=1'],
  ]) {
    const run = await cli(t, ['--dir', dir, ...args])
    exits(t, run, 2)
    oneLine(t, run, /^tied-session: cannot set cart\.items/)
    t.is(run.stdout, '')
  }
})

test.serial('--timeout and TIED_SESSION_TIMEOUT set the request timeout', async (t) => {
  const stalled = await useMemcached(t)
  await stalled.pause()
  t.teardown(() => stalled.resume())
  const within = await bound(t, 2)
  const id = 'a'.repeat(32)
  const [flag, env] = await Promise.all([
    cli(t, ['--servers', stalled.address, '--timeout', '200', 'show', id]),
    cli(t, ['--servers', stalled.address, 'show', id], { env: { TIED_SESSION_TIMEOUT: '250' } }),
  ])
  exits(t, flag, 3)
  oneLine(t, flag, /no answer from memcached .* in 200 ms/)
  t.true(flag.ms < within(900), `${flag.ms} ms`)
  exits(t, env, 3)
  oneLine(t, env, /no answer from memcached .* in 250 ms/)
  const bad = await cli(t, ['--timeout', 'soon', 'list'])
  exits(t, bad, 2)
  t.regex(bad.stderr, /^tied-session: --timeout takes milliseconds/)
})
