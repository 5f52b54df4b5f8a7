/**
 * The commands on one session by id: new, show, set, unset, destroy.
 */
import { destroy, isSessionError, save, tieSession, untie, updateSession, type TieOptions } from '../index.js'
import { expectArgs, type Command, type Context } from './context.js'
import { CliError, EXIT } from './errors.js'
import { checkIds } from './ids.js'
import { secondsLeft } from './lifetime.js'
import { flatten, parseAssignment, setPath, showValue, splitPath, unsetPath } from './paths.js'

type Data = Record<string, unknown>

/** A tied session's data as a plain object, detached from the session. */
const plain = (s: object) => JSON.parse(JSON.stringify(s)) as Data

/** `new [path=value ...]`: creates a session with the values, prints its id. */
export const newSession: Command = async (ctx) => {
  const data: Data = {}
  for (const arg of ctx.args) {
    const { segments, value } = parseAssignment(arg, 'new')
    setPath(data, segments, value)
  }
  const s = await tieSession(undefined, ctx.open().tie)
  try {
    Object.assign(s, data)
    await save(s)
  } catch (err) {
    await destroy(s).catch(() => undefined) // no half-made session is left behind
    throw err
  }
  const saved = plain(s)
  await untie(s)
  if (ctx.out.json) ctx.out.print({ id: s._session_id, data: saved })
  else ctx.out.line(s._session_id)
  return EXIT.ok
}

/** `show <id>`: every value of the session, as a path/value table or JSON. */
export const show: Command = async (ctx) => {
  expectArgs(ctx, 1, 1, 'one session id')
  const [id] = ctx.args as [string]
  checkIds([id], 'show')
  const s = await tieSession(id, ctx.open().tie)
  const data = plain(s)
  await untie(s)
  if (ctx.out.json) ctx.out.print(data)
  else
    ctx.out.table(
      ['PATH', 'VALUE'],
      flatten(data).map(([path, value]) => [path, showValue(value)]),
    )
  return EXIT.ok
}

/**
 * The tie options of a change to session `id` that keeps its lifetime: the seconds it has left
 * (so that a session the application made for 60 s does not live a day after `set`), unless
 * --expires was given on the command line.
 */
async function keepingLifetime(ctx: Context, id: string): Promise<TieOptions> {
  const open = ctx.open()
  if (open.config.expiresFlag) return open.tie
  const left = await secondsLeft(open, open.config.namespace + id)
  return left === undefined ? open.tie : { ...open.tie, expires: left }
}

/** `set <id> path=value ...`: one atomic change (updateSession: compare-and-swap, retried). */
export const set: Command = async (ctx) => {
  expectArgs(ctx, 2, Infinity, 'a session id and at least one path=value')
  const [id, ...rest] = ctx.args as [string, ...string[]]
  checkIds([id], 'set')
  const assignments = rest.map((arg) => parseAssignment(arg, 'set'))
  const saved = await updateSession(
    id,
    (data: Data) => {
      // called again on a conflict, with fresh data: the values are copied each time
      for (const a of assignments) setPath(data, a.segments, structuredClone(a.value))
    },
    await keepingLifetime(ctx, id),
  )
  if (ctx.out.json) ctx.out.print({ id, data: plain(saved) })
  else ctx.out.line(`updated ${id}: set ${assignments.map((a) => a.path).join(', ')}`)
  return EXIT.ok
}

/** `unset <id> path ...`: removes the paths in one atomic change. */
export const unset: Command = async (ctx) => {
  expectArgs(ctx, 2, Infinity, 'a session id and at least one path')
  const [id, ...paths] = ctx.args as [string, ...string[]]
  checkIds([id], 'unset')
  const segments = paths.map((path) => splitPath(path, 'unset'))
  let removed: string[] = []
  let absent: string[] = []
  const saved = await updateSession(
    id,
    (data: Data) => {
      removed = []
      absent = []
      segments.forEach((s, i) => (unsetPath(data, s) ? removed : absent).push(paths[i]!))
    },
    await keepingLifetime(ctx, id),
  )
  if (ctx.out.json) {
    ctx.out.print({ id, removed, absent, data: plain(saved) })
  } else {
    const parts = [removed.length > 0 ? `removed ${removed.join(', ')}` : 'nothing removed']
    if (absent.length > 0) parts.push(`not there: ${absent.join(', ')}`)
    ctx.out.line(`updated ${id}: ${parts.join('; ')}`)
  }
  return EXIT.ok
}

/** `destroy <id> ...`: destroys each session; exit 1 when one was not there. */
export const destroyCommand: Command = async (ctx) => {
  expectArgs(ctx, 1, Infinity, 'one or more session ids')
  checkIds(ctx.args, 'destroy')
  const open = ctx.open()
  const destroyed: string[] = []
  const notFound: string[] = []
  for (const id of new Set(ctx.args)) {
    try {
      // tied first, so that the user's index loses the session too
      await destroy(await tieSession(id, open.tie))
      destroyed.push(id)
    } catch (err) {
      if (isSessionError(err, 'ERR_SESSION_NOT_FOUND')) notFound.push(id)
      else if (isSessionError(err, 'ERR_CORRUPT') && (await open.store.delete(open.config.namespace + id))) destroyed.push(id)
      else throw err
    }
  }
  if (!ctx.out.json) for (const id of destroyed) ctx.out.line(`destroyed ${id}`)
  if (notFound.length === 0) {
    if (ctx.out.json) ctx.out.print({ destroyed, notFound })
    return EXIT.ok
  }
  const error = new CliError(`not found (no such session, or expired): ${notFound.join(', ')}`, EXIT.notFound)
  return ctx.out.fail(error, { destroyed, notFound })
}
