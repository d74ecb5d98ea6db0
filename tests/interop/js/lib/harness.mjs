// A tiny step runner shared by the suites: named steps with a timeout each, an overall
// deadline, a failure message that says what was expected and what happened, and a closing
// "N passed, N failed" line. Steps build on each other: after a failure, the rest of the
// failed step's group (or, for a step in no group, every later step) is skipped, except
// steps marked `always`.

const START = Date.now();

export function say(text) {
    const t = ((Date.now() - START) / 1000).toFixed(1).padStart(5);
    process.stdout.write(`[${t}s] ${text}\n`);
}

export function debugEnabled() {
    return !!process.env.INTEROP_DEBUG;
}

export class Failure extends Error {}

export function check(condition, message) {
    if (!condition) throw new Failure(message);
}

/** The value of an environment variable the runner must set. */
export function env(name) {
    const v = process.env[name];
    if (v === undefined || v === '') {
        process.stderr.write(`missing environment variable ${name} (run this suite through run.sh)\n`);
        process.exit(2);
    }
    return v;
}

export function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a Failure naming `what` unless `promise` settles within `ms`. */
export function within(ms, what, promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Failure(`timed out after ${ms / 1000} s waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `predicate` (which may be async) until it returns a truthy value. */
export async function waitFor(predicate, what, ms = 10000, every = 50) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = await predicate();
        if (v) return v;
        if (Date.now() >= deadline) throw new Failure(`timed out after ${ms / 1000} s waiting for ${what}`);
        await sleep(every);
    }
}

/**
 * A queue of received items with `next(match, what, ms)`, which resolves with the first
 * item (already received or still to come) that `match` accepts and removes it.
 */
export class Inbox {
    constructor(label) {
        this.label = label;
        this.items = [];
        this.waiters = [];
    }

    push(item) {
        const i = this.waiters.findIndex((w) => w.match(item));
        if (i >= 0) {
            const [w] = this.waiters.splice(i, 1);
            w.resolve(item);
        } else {
            this.items.push(item);
        }
    }

    next(match, what, ms = 10000) {
        const i = this.items.findIndex(match);
        if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
        let waiter;
        const p = new Promise((resolve) => {
            waiter = { match, resolve };
            this.waiters.push(waiter);
        });
        return within(ms, `${this.label} to receive ${what}`, p).catch((e) => {
            this.waiters = this.waiters.filter((w) => w !== waiter);
            const seen = this.items.length ? `; it has received instead: ${JSON.stringify(this.items)}` : '; it has received nothing else';
            throw new Failure(e.message + seen);
        });
    }
}

/**
 * Runs `steps` ([name, async fn, {timeout, always, group}]) in order and returns the process exit
 * status. The whole run is bounded by `overallMs`; `cleanup` runs at the end regardless.
 */
export async function runSteps(title, steps, { overallMs = 60000, cleanup = async () => {} } = {}) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    let broken = false; // a step in no group failed
    const brokenGroups = new Set();
    const overall = setTimeout(() => {
        say(`FAIL ${title}: the whole suite took longer than ${overallMs / 1000} s`);
        process.stdout.write(`${title}: ${passed} passed, ${failed + 1} failed\n`);
        process.exit(1);
    }, overallMs);
    overall.unref();

    say(`${title}: ${steps.length} steps`);
    for (const [name, fn, opts = {}] of steps) {
        if ((broken || brokenGroups.has(opts.group)) && !opts.always) {
            say(`SKIP ${name} (an earlier step failed)`);
            skipped++;
            continue;
        }
        const t0 = Date.now();
        try {
            await within(opts.timeout ?? 15000, `step "${name}"`, Promise.resolve().then(fn));
            say(`PASS ${name} (${Date.now() - t0} ms)`);
            passed++;
        } catch (e) {
            const msg = e instanceof Failure ? e.message : (e && e.stack) || String(e);
            say(`FAIL ${name}: ${msg}`);
            failed++;
            if (opts.group === undefined) broken = true;
            else brokenGroups.add(opts.group);
        }
    }
    try {
        await within(10000, 'cleanup', Promise.resolve().then(cleanup));
    } catch (e) {
        say(`cleanup: ${e.message}`);
    }
    clearTimeout(overall);
    const tail = skipped ? `, ${skipped} skipped` : '';
    process.stdout.write(`${title}: ${passed} passed, ${failed} failed${tail}\n`);
    return failed === 0 && skipped === 0 ? 0 : 1;
}
