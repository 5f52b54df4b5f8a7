import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type TestFn } from 'ava'
import { chromium } from 'playwright-core'
import { startSsoDemo } from '../examples/sso.js'

const test = anyTest as TestFn<unknown>

/** Debian's chromium (`apt-get install chromium`; .ci/run and scripts/test.mjs install it as root). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p))

test('SSO demo in a real browser: log in at the portal, the app shows the user; log out everywhere, the app asks to log in', async (t) => {
  if (CHROMIUM === undefined) return t.fail('this test needs Chromium: apt-get install chromium (or set CHROMIUM_PATH)')
  const demo = await startSsoDemo()
  t.teardown(() => demo.close())
  // headless Chromium as root needs --no-sandbox
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 30_000 })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  page.setDefaultTimeout(15_000)

  await page.goto(`${demo.portal}/`)
  await page.fill('input[name=uid]', 'dwho')
  await page.click('button')
  t.is(await page.textContent('#user'), 'dwho')

  await page.click('#app')
  t.is(new URL(page.url()).origin, demo.app)
  t.is(await page.textContent('#user'), 'dwho')
  t.regex((await page.textContent('body')) ?? '', /Hello dwho, from the portal's session/)
  const dir = mkdtempSync(join(tmpdir(), 'tied-sso-shot-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const shot = join(dir, 'app.png')
  await page.screenshot({ path: shot })
  t.true(statSync(shot).size > 0)

  await page.goto(`${demo.portal}/`)
  await page.click('#logout')
  t.regex((await page.textContent('body')) ?? '', /Log in/)

  await page.goto(`${demo.app}/`)
  t.regex((await page.textContent('body')) ?? '', /Not logged in\. Log in at the portal/)
})
