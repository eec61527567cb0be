// Booting a deployed system the classical way (BootNewEnvClassical, BootNewEnvHardReboot) when its
// environment names its kernel: the kernel and initrd taken out of the image are uploaded once to
// each service node that serves target nodes (content-addressed, so a file already there is kept),
// and each node's netboot profile becomes `env`: that kernel, over HTTP, with root= the deployed
// partition and the environment's kernel parameters. Kadeploy boots PXE-booted systems this way.
import { readFile } from 'node:fs/promises';
import type { EnvBootFiles } from '../envs/boot-files.js';
import { ServiceClient } from '../services/client.js';
import type { EnvBoot } from '../services/config.js';

/** The kernel command line: the environment's parameters, with root= the partition unless they name one. */
export function deployedCmdline(kernelParams: string, partition: string): string {
  const params = kernelParams.trim().split(/\s+/).filter(Boolean);
  return params.some((p) => p.startsWith('root='))
    ? params.join(' ')
    : [`root=${partition}`, ...params].join(' ');
}

/** Where a boot file lives under a service node's httpRoot (and /files/ of its HTTP server). */
export function envFilePath(sha256: string, kind: 'kernel' | 'initrd'): string {
  return `envs/${sha256}/${kind}`;
}

/** What the profile PUT carries for the `env` profile. */
export function envBootOf(files: EnvBootFiles, partition: string): EnvBoot {
  return {
    kernel: envFilePath(files.kernel.sha256, 'kernel'),
    initrd: files.initrd && envFilePath(files.initrd.sha256, 'initrd'),
    cmdline: deployedCmdline(files.kernelParams, partition),
  };
}

export interface BootFileData {
  kernel: Buffer<ArrayBuffer>;
  initrd: Buffer<ArrayBuffer> | null;
}

export async function readBootFiles(files: EnvBootFiles): Promise<BootFileData> {
  return {
    kernel: await readFile(files.kernel.path),
    initrd: files.initrd && (await readFile(files.initrd.path)),
  };
}

/**
 * Uploads the kernel and initrd to a service node (read from the cache unless given), with the
 * testbed's control secret when it has one.
 */
export async function uploadEnvBoot(
  serviceUrl: string,
  files: EnvBootFiles,
  signal?: AbortSignal,
  data?: BootFileData,
  secret: string | null = null,
): Promise<void> {
  const d = data ?? (await readBootFiles(files));
  // a copy already there is fine: the path names its content
  const service = new ServiceClient(serviceUrl, { secret });
  await service.putFile(envFilePath(files.kernel.sha256, 'kernel'), d.kernel, { signal });
  if (files.initrd && d.initrd) {
    await service.putFile(envFilePath(files.initrd.sha256, 'initrd'), d.initrd, { signal });
  }
}

/**
 * One upload per service node for the whole deployment, however many batches ask at once (the
 * files read once for all of them); a failed one is tried again by the next caller (a retry).
 */
export function uploadOnce(files: EnvBootFiles, upload = uploadEnvBoot, secret: string | null = null) {
  const done = new Map<string, Promise<void>>();
  let data: Promise<BootFileData> | null = null;
  return (serviceUrl: string): Promise<void> => {
    let p = done.get(serviceUrl);
    if (!p) {
      data ??= readBootFiles(files);
      const loaded = data;
      p = loaded.then((d) => upload(serviceUrl, files, AbortSignal.timeout(120_000), d, secret));
      done.set(serviceUrl, p);
      p.catch(() => {
        done.delete(serviceUrl);
        if (data === loaded) data = null;
      });
    }
    return p;
  };
}
