// Sends a few events with each JavaScript SDK, configured only by its host (README "Send from your app").
// Browser SDKs run in jsdom on another origin (posthog-js through jsdom's XMLHttpRequest, which enforces CORS).
// Usage: API=http://127.0.0.1:8000 KEY=demo-key TAG=abc node send.cjs
const { JSDOM } = require('jsdom')
const fs = require('fs')
const api = process.env.API, key = process.env.KEY, tag = process.env.TAG

async function segmentNode () {
  const { Analytics } = require('@segment/analytics-node')
  const analytics = new Analytics({ writeKey: key, host: api })
  analytics.on('error', (e) => { console.error('analytics-node', e); process.exitCode = 1 })
  analytics.track({ userId: 'node-user', event: 'Node Order Completed', properties: { tag } })
  analytics.identify({ userId: 'node-user', traits: { tag } })
  await analytics.closeAndFlush()
}

async function posthogNode () {
  const { PostHog } = require('posthog-node')
  const posthog = new PostHog(key, { host: api })
  posthog.on('error', (e) => { console.error('posthog-node', e); process.exitCode = 1 })
  posthog.capture({ distinctId: 'node-user', event: 'Node Signed Up', properties: { tag } })
  await posthog.shutdown()
}

function page () {
  return new JSDOM('<!doctype html><html><head><script></script></head><body></body></html>',
    { url: 'http://app.example.test/shop', runScripts: 'outside-only', pretendToBeVisual: true })
}

async function posthogBrowser () {
  const w = page().window
  w.console.warn = () => {}
  w.eval(fs.readFileSync(require.resolve('posthog-js/dist/array.full.js'), 'utf8'))
  w.posthog.init(key, { api_host: api, advanced_disable_flags: true })
  w.posthog.capture('Browser Clicked', { tag })
  w.posthog.identify('browser-user', { tag })
  await new Promise((resolve) => setTimeout(resolve, 5000)) // posthog-js flushes its queue every 3 s
}

async function segmentBrowser () {
  const w = page().window
  for (const name of ['window', 'document', 'navigator', 'localStorage', 'location']) global[name] = w[name]
  const { AnalyticsBrowser } = require('@segment/analytics-next')
  const apiHost = api.replace(/^https?:\/\//, '') + '/v1'
  const analytics = AnalyticsBrowser.load({ writeKey: key,
    cdnSettings: { integrations: { 'Segment.io': { apiKey: key, apiHost, protocol: api.split(':')[0] } } } })
  await analytics.track('Browser Order Completed', { tag })
  await analytics.page('Docs', 'Pricing', { tag })
}

;(async () => {
  await segmentNode(); await posthogNode(); await posthogBrowser(); await segmentBrowser()
  console.log('sent'); process.exit(process.exitCode || 0)
})().catch((e) => { console.error(e); process.exit(1) })
