/**
 * The commands on a user's sessions, through the principal index: find, logout.
 */
import { destroySessions, findSessions, isSessionError, md5Hex } from '../index.js'
import { expectArgs, type Command } from './context.js'
import { CliError, EXIT } from './errors.js'
import { humanBytes, humanExpiry } from './output.js'

/** `find <user>`: the user's live sessions with their expiry (from the index) and stored size. */
export const find: Command = async (ctx) => {
  expectArgs(ctx, 1, 1, 'one user id')
  const [user] = ctx.args as [string]
  const { store, tie, config } = ctx.open()
  const ids = await findSessions(user, tie)
  // the user's list, `md5_hex(uid):sessions`, records each session's expiry (`exp`, Unix s, 0 = never)
  const listed = await store.get(`${config.namespace}${md5Hex(user)}:sessions`, { consistent: true })
  const exps = new Map<string, number>()
  try {
    for (const e of JSON.parse(String(listed?.value ?? '[]')) as Array<{ id?: unknown; exp?: unknown }>) {
      if (typeof e.id === 'string' && typeof e.exp === 'number') exps.set(e.id, e.exp)
    }
  } catch {
    // a list another tool broke: the expiry is unknown
  }
  const found = await Promise.all(
    ids.map(async (id) => {
      const exp = exps.get(id)
      const expires = exp === undefined ? null : exp === 0 ? 'never' : new Date(exp * 1000).toISOString()
      try {
        const entry = await store.get(config.namespace + id, { consistent: true })
        return entry && { id, expires, exp: exp ?? null, size: Buffer.byteLength(entry.value) as number | null }
      } catch (err) {
        // another client's item under the id (it wrote with flags): listed as not readable, left alone
        if (!isSessionError(err, 'ERR_CORRUPT')) throw err
        return { id, expires, exp: exp ?? null, size: null }
      }
    }),
  )
  const sessions = found.filter((s) => s !== undefined)
  if (sessions.length === 0) {
    const error = new CliError(`no session found for user ${JSON.stringify(user)} (principal field "${config.principal}")`, EXIT.notFound)
    return ctx.out.fail(error, { user, sessions })
  }
  if (ctx.out.json) ctx.out.print({ user, sessions })
  else {
    const rows = sessions.map((s) => [
      s.id,
      s.exp === null ? 'unknown' : s.exp === 0 ? 'never' : humanExpiry(s.exp),
      s.size === null ? 'not readable' : s.size < 1024 ? `${s.size} B` : `${s.size} B (${humanBytes(s.size)})`,
    ])
    ctx.out.table(['ID', 'EXPIRES', 'SIZE'], rows, [2])
    ctx.out.line(ctx.out.paint(`${sessions.length} session${sessions.length === 1 ? '' : 's'} of ${user}`, 'dim'))
  }
  return EXIT.ok
}

/** `logout <user>`: destroys every session of the user, prints how many. */
export const logout: Command = async (ctx) => {
  expectArgs(ctx, 1, 1, 'one user id')
  const [user] = ctx.args as [string]
  const { tie, config } = ctx.open()
  const destroyed = await destroySessions(user, tie)
  if (destroyed === 0) {
    // as find: a user with no session is not found
    const error = new CliError(`no session found for user ${JSON.stringify(user)} (principal field "${config.principal}")`, EXIT.notFound)
    return ctx.out.fail(error, { user, destroyed })
  }
  if (ctx.out.json) ctx.out.print({ user, destroyed })
  else ctx.out.line(`logged out ${user}: destroyed ${destroyed} session${destroyed === 1 ? '' : 's'}`)
  return EXIT.ok
}
