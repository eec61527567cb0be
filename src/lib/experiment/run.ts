// `experiment run RECIPE`: the reference experiment replayed in one command — setup, register the
// (scaled) environment, deploy it with the runtime's boot model and the recipe's faults, report,
// teardown. Each finished stage is recorded in the testbed's state directory (record.ts), so a
// re-run after a crash continues where the last one stopped (setup itself resumes from its own
// state). The report is kept under experimentsDir(), where it outlives the testbed.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { type LoadedConfig, loadConfig } from '../config/load.js';
import { deployTestbed } from '../deploy/deployment.js';
import { type Deployment, loadDeployment } from '../deploy/stats.js';
import { getEnvironment, type RegisteredEnvironment } from '../envs/registry.js';
import { ExitCode, InputError } from '../errors.js';
import { runtimeFor } from '../runtime/index.js';
import { experimentsDir, TestbedLayout } from '../state/layout.js';
import { StateStore } from '../state/store.js';
import type { TestbedContext } from '../testbed/context.js';
import { setupTestbed } from '../testbed/setup/index.js';
import { teardownTestbed } from '../testbed/teardown.js';
import { envSpecOf, MiB, registerExperimentEnv } from './image.js';
import { type ExperimentRecord, readRecord, STAGES, type Stage, writeRecord } from './record.js';
import { buildReport, type ExperimentReport } from './report.js';
import { UsageSampler } from './usage.js';

export interface ExperimentRequest {
  recipe: string;
  user: string;
  /** Divide the recipe's image size by this (a number ≥ 1, as typed); absent: derived from the VMs, free memory and disk. */
  imageScale?: string;
  /** Leave the testbed up after the report (no teardown). */
  keep?: boolean;
}

export interface ExperimentResult extends ExperimentReport {
  /** Where the report is kept (JSON). */
  reportFile: string;
  tornDown: boolean;
  /** 0 every node OK; 6 some KO. */
  exitCode: number;
}

/** Everything checked before anything is touched: one InputError line otherwise. */
export async function checkExperimentRequest(
  req: ExperimentRequest,
): Promise<{ loaded: LoadedConfig; scale?: number }> {
  const scale = req.imageScale === undefined ? undefined : Number(req.imageScale);
  if (scale !== undefined && !(Number.isFinite(scale) && scale >= 1)) {
    throw new InputError(
      `--image-scale: "${req.imageScale}" is not a number of 1 or more (1: the full image)`,
    );
  }
  const loaded = await loadConfig(req.recipe);
  envSpecOf(loaded.config, loaded.source);
  return { loaded, scale };
}

export async function runExperiment(req: ExperimentRequest, ctx: TestbedContext): Promise<ExperimentResult> {
  const { loaded, scale } = await checkExperimentRequest(req);
  const config = loaded.config;
  const name = config.name;
  const layout = TestbedLayout.of(name);
  const store = new StateStore(name);
  // a record without the testbed's state is from a testbed torn down by hand: start over
  const record: ExperimentRecord | null = (await store.read())
    ? await readRecord(layout.experimentFile)
    : null;
  const resumed = record !== null;
  const sampler = new UsageSampler(record?.usage);
  const rec: ExperimentRecord = record ?? {
    version: 1,
    recipe: loaded.source,
    startedAt: Date.now(),
    usage: sampler.now(),
    stages: {},
  };
  const stages: ExperimentReport['stages'] = [];
  const save = async () => {
    rec.usage = sampler.now();
    await writeRecord(layout.experimentFile, rec);
  };
  let current: Stage = 'setup';
  // every progress step says which stage it belongs to
  const staged = (stage: Stage): TestbedContext => ({
    logger: ctx.logger,
    progress: {
      step: (title, run) =>
        ctx.progress.step(`[${STAGES.indexOf(stage) + 1}/${STAGES.length} ${stage}] ${title}`, run),
    },
  });
  const timed = async <T>(stage: Stage, run: () => Promise<T>): Promise<[T, number]> => {
    current = stage;
    const t0 = Date.now();
    const out = await run();
    const ms = Date.now() - t0;
    stages.push({ stage, status: 'ran', ms });
    return [out, ms];
  };
  const skipped = (stage: Stage, ms: number) => {
    current = stage;
    stages.push({ stage, status: 'resumed', ms });
    ctx.logger.info(`experiment ${name}: ${stage} already done, resumed after it`);
  };
  try {
    // 1. setup (its own phases resume from the testbed's state)
    if (rec.stages.setup && (await store.read())?.phase === 'ready') skipped('setup', rec.stages.setup.ms);
    else {
      const [r, ms] = await timed('setup', () =>
        setupTestbed(
          loaded,
          { waitTimeoutMs: 1_800_000, reserveOnly: false, vms: true, retries: 1 },
          staged('setup'),
        ),
      );
      const t = r.plan.totals;
      rec.stages.setup = {
        ms,
        testbed: {
          sites: t.sites,
          vmHosts: t.hosts,
          serviceNodes: t.serviceNodes,
          vms: t.vms,
          vmsUp: r.vms.filter((v) => v.state === 'ssh').length,
          jobs: r.jobs.map((j) => ({ site: j.site, uid: j.uid })),
        },
      };
      await save();
    }

    // 2. the environment, scaled to what this machine can move
    let env: RegisteredEnvironment | null = null;
    if (rec.stages.env) {
      const e = rec.stages.env;
      env = await getEnvironment(e.name, e.version).catch(() => null);
      if (env) skipped('env', e.ms);
    }
    if (!env) {
      const spec = envSpecOf(config, loaded.source);
      const [got, ms] = await timed('env', () =>
        staged('env').progress.step(`Build and register the ${spec.name} environment`, async (step) => {
          const vms = rec.stages.setup?.testbed.vms ?? 0;
          const r = await registerExperimentEnv(spec, {
            user: req.user,
            vms,
            scale,
            configDir: loaded.baseDir,
          });
          step.status(`${(r.env.bytes / MiB).toFixed(1)} MiB (÷ ${r.imageScale.toFixed(2)})`);
          return r;
        }),
      );
      env = got.env;
      rec.stages.env = {
        ms,
        name: env.description.name,
        version: env.description.version,
        imageMB: got.imageMB,
        imageScale: got.imageScale,
        reason: got.scaleReason,
      };
      await save();
    }

    // 3. the deployment: the runtime's boot model, the recipe's faults
    let dep: Deployment | null = null;
    if (rec.stages.deploy) {
      dep = await loadDeployment(name, rec.stages.deploy.id).catch(() => null);
      if (dep) skipped('deploy', rec.stages.deploy.ms);
    }
    if (!dep) {
      const [d, ms] = await timed('deploy', () =>
        deployTestbed(
          { testbed: name, user: req.user, env: env.description.name, envVersion: env.description.version },
          staged('deploy'),
        ),
      );
      dep = d;
      rec.stages.deploy = { ms, id: d.id };
      await save();
    }

    // 4. the report, kept where it outlives the testbed
    let report: ExperimentReport;
    let reportFile: string;
    if (rec.stages.report) {
      reportFile = rec.stages.report.file;
      report = JSON.parse(await readFile(reportFile, 'utf8')) as ExperimentReport;
      skipped('report', rec.stages.report.ms);
    } else {
      const t0 = Date.now();
      const tuning = runtimeFor(config).tuning;
      const realTime = runtimeFor({
        ...config,
        vms: { ...config.vms, emulated: { ...config.vms.emulated, timeScale: 1 } },
      });
      const e = rec.stages.env!;
      report = buildReport({
        experiment: name,
        recipe: rec.recipe,
        startedAt: rec.startedAt,
        resumed,
        stages,
        testbed: rec.stages.setup!.testbed,
        dep,
        env: { name: e.name, version: e.version, imageBytes: env.bytes, sha256: env.sha256 },
        imageMB: e.imageMB,
        imageScale: e.imageScale,
        imageScaleReason: e.reason,
        timeScale: tuning.timeScale,
        modelLowerBoundMs: realTime.tuning.lowerBoundMs?.(e.imageMB * MiB),
        controller: sampler.now(),
      });
      await mkdir(experimentsDir(), { recursive: true });
      reportFile = join(experimentsDir(), `${name}-${dep.id}.json`);
      await writeFileAtomic(reportFile, `${JSON.stringify(report, null, 2)}\n`);
      const ms = Date.now() - t0;
      stages.push({ stage: 'report', status: 'ran', ms });
      rec.stages.report = { ms, file: reportFile };
      await save();
    }

    // 5. teardown (removes the record with the rest of the testbed's state)
    let tornDown = false;
    if (!req.keep) {
      await timed('teardown', () => teardownTestbed(name, staged('teardown')));
      tornDown = true;
    }
    const final: ExperimentReport = {
      ...report,
      resumed: report.resumed || resumed,
      stages: mergeStages(report.stages, stages),
      controller: sampler.now(),
    };
    await writeFileAtomic(reportFile, `${JSON.stringify(final, null, 2)}\n`);
    return {
      ...final,
      reportFile,
      tornDown,
      exitCode: final.deployment.ko > 0 ? ExitCode.partial : ExitCode.ok,
    };
  } catch (e) {
    // keep what this run spent in the record, if the testbed is still there to hold it
    if (await store.read().catch(() => null)) {
      if (Object.keys(rec.stages).length) await save().catch(() => {});
      ctx.logger.warn(
        `experiment ${name} stopped in its ${current} stage: run it again to continue, or 'kabootstrap teardown -n ${name}'`,
      );
    }
    throw e;
  } finally {
    sampler.stop();
  }
}

/** A stage this run did replaces the earlier run's line for it; the order stays the stages' own. */
function mergeStages(
  earlier: ExperimentReport['stages'],
  now: ExperimentReport['stages'],
): ExperimentReport['stages'] {
  const by = new Map(earlier.map((s) => [s.stage, s]));
  for (const s of now) if (!(s.status === 'resumed' && by.has(s.stage))) by.set(s.stage, s);
  return [...by.values()];
}
