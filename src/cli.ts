#!/usr/bin/env node
/**
 * The `tied-session` command: inspect and manage sessions from a shell. See `tied-session --help`.
 */
import { main } from './cli/main.js'

// `tied-session list | head`: a reader that went away is not an error
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err
  process.exit(process.exitCode ?? 0)
})

process.exitCode = await main(process.argv.slice(2))
// every store is closed by now, so the process ends at once; should a handle linger, do not hang on it
setTimeout(() => process.exit(), 1000).unref()
