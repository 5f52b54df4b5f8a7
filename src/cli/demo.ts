/**
 * `demo`: the quick-start demonstration. On the file store (no server) or on --servers, it
 * creates a session for a user, writes nested data, re-reads it by id in a second process,
 * finds it by user id and logs the user out, saying what each step does.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { destroySessions, findSessions, isSessionError, reload, save, tieSession, untie } from '../index.js'
import { storeFlags } from './args.js'
import { expectArgs, type Command } from './context.js'
import { CliError, EXIT, errorLine } from './errors.js'
import { describeStore } from './store.js'

/** The hidden command the demo's second process runs. */
export const SECOND_PROCESS = '__demo-second-process'

/** The second process is killed after this long. */
const CHILD_TIMEOUT_MS = 15_000

interface DemoData {
  cart?: { items: Array<{ sku: number; qty: number }>; currency: string }
  visits?: number
  [field: string]: unknown
}

/** What the second process saw before it wrote. */
interface Seen {
  pid: number
  user: unknown
  items: number
  visits: number | undefined
}

/** `demo`: narrates each step; --json prints the steps as a list. */
export const demo: Command = async (ctx) => {
  expectArgs(ctx, 0, 0, 'no arguments')
  const open = ctx.open()
  const { tie } = open
  const field = open.config.principal
  // a user of its own: a demo run against shared servers must not log a real user out
  const user = `dwho-demo-${randomBytes(3).toString('hex')}`
  const steps: string[] = []
  const say = (text: string) => {
    steps.push(text)
    if (!ctx.out.json) ctx.out.line(`${ctx.out.paint(`${steps.length}.`, 'bold')} ${text}`)
  }
  const where = describeStore(open) + (open.kind === 'file' ? ' (no server needed)' : '')
  if (!ctx.out.json) ctx.out.line(`tied-session demo on ${where}\n`)

  const s = await tieSession<DemoData>(undefined, tie)
  const id = s._session_id
  s[field] = user
  await save(s)
  say(
    `This process (pid ${process.pid}) created session ${id} and set ${field} = "${user}". ` +
      `"${field}" is the principal field: saving indexed the session under md5("${user}"), so it can be found by user.`,
  )

  s.cart = { items: [], currency: 'EUR' }
  s.cart.items.push({ sku: 42, qty: 2 })
  s.visits = 1
  await save(s)
  say(`It wrote nested data with plain assignments and push(), and saved: cart = ${JSON.stringify(s.cart)}, visits = 1.`)

  const seen = await secondProcess(id, ctx.config, open.kind === 'file' ? open.store.directory : undefined)
  say(
    `A second process (pid ${seen.pid}) tied the session by its id alone and read ${field} = ${JSON.stringify(seen.user)}, ` +
      `${seen.items} item in the cart and visits = ${seen.visits}. It added an item, counted a visit and untied, which wrote both back.`,
  )

  await reload(s)
  say(
    `Back in the first process, reload() read the session again and shows the second process's writes: ` +
      `${s.cart.items.length} items (skus ${s.cart.items.map((i) => i.sku).join(' and ')}), visits = ${s.visits}.`,
  )
  await untie(s)

  const ids = await findSessions(user, tie)
  if (!ids.includes(id))
    throw new CliError(`findSessions("${user}") did not find session ${id}; the principal index is not working`, EXIT.unavailable)
  say(
    `findSessions("${user}") looked the user up in the index and found ${ids.length === 1 ? 'the session' : `${ids.length} sessions`}: ${ids.join(', ')}.`,
  )

  const destroyed = await destroySessions(user, tie)
  let gone = false
  try {
    await untie(await tieSession(id, tie))
  } catch (err) {
    if (!isSessionError(err, 'ERR_SESSION_NOT_FOUND')) throw err
    gone = true
  }
  if (!gone) throw new CliError(`session ${id} is still there after destroySessions("${user}")`, EXIT.unavailable)
  say(
    `destroySessions("${user}") logged the user out: ${destroyed} session${destroyed === 1 ? '' : 's'} destroyed. ` +
      `Tying ${id} again now fails with ERR_SESSION_NOT_FOUND.`,
  )

  if (ctx.out.json) {
    ctx.out.print({ store: where, user, id, steps })
  } else {
    // npx finds the command both in a clone of this repository (the package's own bin) and where it is installed
    ctx.out.line(`\nDone. Try it by hand: npx tied-session new ${field}=dwho cart.items.0.sku=42, then npx tied-session find dwho.`)
    ctx.out.line('npx tied-session --help lists every command.')
  }
  return EXIT.ok
}

/** Runs this same command file as a second process, on the same store, to re-read session `id`. */
async function secondProcess(id: string, config: Parameters<typeof storeFlags>[0], dir: string | undefined): Promise<Seen> {
  // the entry next to this file: dist/cli.js, or src/cli.ts when run with tsx
  const here = fileURLToPath(import.meta.url)
  const entry = path.join(path.dirname(here), '..', `cli${path.extname(here)}`)
  const args = [...process.execArgv, entry, ...storeFlags(config, dir), SECOND_PROCESS, id]
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL' })
    return JSON.parse(stdout) as Seen
  } catch (err) {
    const { stderr, killed, code } = err as { stderr?: string; killed?: boolean; code?: unknown }
    const why = killed ? `did not finish in ${CHILD_TIMEOUT_MS / 1000} s` : (stderr?.trim().split('\n')[0] ?? errorLine(err))
    // the second process's exit code says what failed (3: the store), when it got to exit
    throw new CliError(`the demo's second process failed: ${why}`, typeof code === 'number' ? code : EXIT.unavailable, { cause: err })
  }
}

/** The hidden `__demo-second-process <id>`: ties the session, reports what it saw, adds to it. */
export const demoSecondProcess: Command = async (ctx) => {
  expectArgs(ctx, 1, 1, 'a session id')
  const open = ctx.open()
  const s = await tieSession<DemoData>(ctx.args[0], open.tie)
  const seen: Seen = { pid: process.pid, user: s[open.config.principal], items: s.cart?.items.length ?? 0, visits: s.visits }
  s.cart?.items.push({ sku: 7, qty: 1 })
  s.visits = (s.visits ?? 0) + 1
  await untie(s)
  ctx.out.print(seen)
  return EXIT.ok
}
