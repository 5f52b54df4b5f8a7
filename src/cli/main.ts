/**
 * Runs one command line: parses it, opens the store, runs the command, maps failures to one
 * line on stderr and an exit code, and always closes the stores so that the process ends at once.
 */
import { readFileSync } from 'node:fs'
import { closeStores } from '../index.js'
import { parseCommandLine, type CommandLine } from './args.js'
import type { Command, Context } from './context.js'
import { demo, demoSecondProcess, SECOND_PROCESS } from './demo.js'
import { EXIT, UsageError, errorJson, errorLine, exitCodeOf } from './errors.js'
import { COMMANDS, commandUsage, usage } from './help.js'
import { list } from './list.js'
import { Output } from './output.js'
import { ping } from './ping.js'
import { destroyCommand, newSession, set, show, unset } from './sessions.js'
import { openStore, type OpenStore } from './store.js'
import { sweep } from './sweep.js'
import { find, logout } from './users.js'

const RUN: Record<string, Command> = {
  new: newSession,
  show,
  set,
  unset,
  destroy: destroyCommand,
  find,
  logout,
  list,
  sweep,
  ping,
  demo,
  [SECOND_PROCESS]: demoSecondProcess,
}

/** Runs `argv` (the arguments after the script) and resolves the exit code. */
export async function main(argv: string[]): Promise<number> {
  let line: CommandLine | undefined
  let opened: OpenStore | undefined
  try {
    line = parseCommandLine(argv)
    const { command, args } = line
    if (line.version) {
      process.stdout.write(`${version()}\n`)
      return EXIT.ok
    }
    if (command === 'help' || line.help) {
      const topic = command === 'help' ? args[0] : command
      if (topic !== undefined && COMMANDS[topic] === undefined) throw new UsageError(`unknown command ${JSON.stringify(topic)}`)
      process.stdout.write(topic === undefined ? usage() : commandUsage(topic))
      return EXIT.ok
    }
    if (command === undefined) throw new UsageError('no command given')
    const run = Object.hasOwn(RUN, command) ? RUN[command] : undefined
    if (run === undefined) throw new UsageError(`unknown command ${JSON.stringify(command)}`)
    const config = line.store()
    const ctx: Context = {
      command,
      args,
      where: line.where,
      config,
      out: new Output({ json: line.json }),
      open: () => (opened ??= openStore(config)),
    }
    return await run(ctx)
  } catch (err) {
    const json = line?.json ?? argv.includes('--json')
    return report(err, { debug: line?.debug ?? argv.includes('--debug'), json })
  } finally {
    await Promise.allSettled([opened?.store.close(), closeStores()])
  }
}

/**
 * One line on stderr (plus the usage for bad usage, the stack with --debug); with --json, also
 * `{"error": {code, message, exit}}` on stdout, and no usage text. Resolves the exit code.
 */
function report(err: unknown, opts: { debug: boolean; json: boolean }): number {
  const { debug, json } = opts
  const code = exitCodeOf(err)
  if (json) process.stdout.write(`${JSON.stringify({ error: errorJson(err) }, null, 2)}\n`)
  process.stderr.write(`${errorLine(err)}\n`)
  if (debug) {
    for (let e: unknown = err; e !== undefined; e = (e as Error).cause) {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      if (!(e instanceof Error)) break
      if (e.cause !== undefined) process.stderr.write('caused by: ')
    }
  }
  if (code === EXIT.usage && err instanceof UsageError && !json) {
    const topic = err.command
    process.stderr.write(`\n${commandUsage(topic !== undefined && COMMANDS[topic] !== undefined ? topic : undefined)}`)
  }
  return code
}

/** The version in package.json, next to dist/ (or src/). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }
  return `tied-session ${pkg.version ?? 'unknown'}`
}
