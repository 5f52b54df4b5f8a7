/**
 * Child Node processes for tests that need more than one process: runs a TypeScript script
 * under test/fixtures/ with tsx, and reaps it in teardown whatever happens.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext } from 'ava'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** How a child ended and what it printed. */
export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** True when the child outlived `timeoutMs` and was killed for it. */
  timedOut: boolean
}

/** A running child and the promise of its end. */
export interface Child {
  process: ChildProcess
  /** Everything the child printed to stdout so far. */
  readonly stdout: string
  /** Resolves on the first stdout line equal to `line` (or rejects when the child ends first). */
  line(line: string): Promise<void>
  exited: Promise<ChildExit>
}

/**
 * Runs `node --import tsx test/fixtures/<script> ...args`; kills it with SIGKILL after
 * `timeoutMs` (default 30 s) and in teardown if it still runs.
 */
export function runFixture(t: ExecutionContext, script: string, args: string[], timeoutMs = 30_000): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', `test/fixtures/${script}`, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  let timedOut = false
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const running = () => child.exitCode === null && child.signalCode === null
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, timeoutMs)
  const exited = new Promise<ChildExit>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
  t.teardown(async () => {
    clearTimeout(timer)
    if (running()) child.kill('SIGKILL')
    await exited
  })
  return {
    process: child,
    get stdout() {
      return stdout
    },
    line: (line) =>
      new Promise<void>((resolve, reject) => {
        const seen = () => stdout.split('\n').slice(0, -1).includes(line) // whole lines only
        if (seen()) return resolve()
        const onData = () => {
          if (!seen()) return
          child.stdout.off('data', onData)
          resolve()
        }
        child.stdout.on('data', onData)
        void exited.then(() => (seen() ? resolve() : reject(new Error(`child ended before printing "${line}": ${stderr}`))))
      }),
    exited,
  }
}
