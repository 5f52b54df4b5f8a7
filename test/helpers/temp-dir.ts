/** A fresh temp directory per test, removed in the test's teardown. */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'

/** A fresh directory (mode 0700, as mkdtemp makes it) named `tied-session-<label>-…`, removed in `t`'s teardown. */
export async function tempDir<C>(t: ExecutionContext<C>, label: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `tied-session-${label}-`))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}
