/**
 * What a command gets: its arguments, the open store and where to print.
 */
import type { StoreConfig } from './args.js'
import { UsageError } from './errors.js'
import type { Output } from './output.js'
import type { OpenStore } from './store.js'

/** The arguments and surroundings of one command run. */
export interface Context {
  command: string
  /** The positional arguments after the command. */
  args: string[]
  /** `--where path=value` filters (list only). */
  where: string[]
  config: StoreConfig
  /** The store, opened on first use (ping and demo open their own). */
  open(): OpenStore
  out: Output
}

/** A command: resolves to its exit code. */
export type Command = (ctx: Context) => Promise<number>

/** Throws UsageError unless the command got `min` to `max` arguments; `what` names them for the message. */
export function expectArgs(ctx: Context, min: number, max: number, what: string): void {
  const n = ctx.args.length
  if (n < min) throw new UsageError(`${ctx.command} needs ${what}`, ctx.command)
  if (n > max) throw new UsageError(`${ctx.command} takes ${what}; unexpected ${JSON.stringify(ctx.args[max])}`, ctx.command)
}
