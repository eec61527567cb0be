// An environment description (Kadeploy's YAML format, the subset kabootstrap deploys).
// Strict: an unknown key is an error, so a typo never silently drops a setting.
import { z } from 'zod';
import { InputError } from '../errors.js';
import { describeIssue, parseYamlMapping } from '../input-file.js';
import { cmdlineSchema } from '../kernel-cmdline.js';

const text = (what: string) => z.string({ error: `expected text (${what})` });

const compression = z.enum(['gzip', 'zstd', 'xz', 'none'], { error: 'expected gzip, zstd, xz or none' });

const image = z.strictObject({
  file: text('path of the image, relative to this file').min(1, { error: 'must not be empty' }),
  kind: z.enum(['tar', 'dd'], { error: 'expected tar or dd' }),
  compression,
});

const postinstall = z.strictObject({
  archive: text('path of the post-install archive').min(1, { error: 'must not be empty' }),
  compression,
  script: text('command run from the extracted archive'),
});

/**
 * Why a boot file's path cannot be used, or null: it is joined to the deployed partition's mount
 * point and handed to the node's agent, and taken out of the image by name.
 */
export function bootPathProblem(path: string): string | null {
  if (/[\r\n]/.test(path)) return 'contains a line break';
  if (!path.startsWith('/')) return 'expected an absolute path inside the image, such as /boot/vmlinuz';
  if (!/^[A-Za-z0-9._+/-]+$/.test(path))
    return 'only letters, digits and . _ + - / may be in the path (no spaces, quotes or shell characters)';
  if (path.split('/').includes('..')) return 'must not step out of the image (..)';
  return null;
}

const bootPath = (what: string) =>
  text(what).superRefine((path, ctx) => {
    const problem = bootPathProblem(path);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const boot = z.strictObject({
  kernel: bootPath('kernel path inside the image'),
  initrd: bootPath('initrd path inside the image').optional(),
  // it may go into an iPXE script (a classical boot of the deployed system): refused here, once
  kernel_params: cmdlineSchema.optional(),
});

/** The filesystems the node agent's `kb-agent format` makes (vm-images/deploy-env/kb-agent). */
export const agentFilesystems = ['ext4'] as const;

export const environmentSchema = z
  .strictObject({
    name: z
      .string({ error: 'expected a name' })
      .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, { error: 'expected a name: letters, digits, . _ + -' }),
    version: z
      .number({ error: 'expected a whole number of at least 1' })
      .int({ error: 'expected a whole number of at least 1' })
      .min(1, { error: 'expected a whole number of at least 1' }),
    description: text('what the environment is'),
    author: text('who made it'),
    visibility: z.enum(['private', 'shared', 'public'], { error: 'expected private, shared or public' }),
    destructive: z.boolean({ error: 'expected true or false' }).default(false),
    os: z.enum(['linux', 'xen', 'other'], { error: 'expected linux, xen or other' }),
    image,
    postinstalls: z.array(postinstall, { error: 'expected a list of post-installs' }).optional(),
    boot: boot.optional(),
    filesystem: z
      .enum(agentFilesystems, {
        error: `expected ${agentFilesystems.join(' or ')} (the filesystems the node agent makes)`,
      })
      .optional(),
    // Kadeploy writes the MBR type as a number (0x83 = 131) or its hex text.
    partition_type: z
      .union([z.number().int().nonnegative(), z.string()], {
        error: 'expected a partition type number such as 131 (0x83)',
      })
      .optional(),
    multipart: z.boolean({ error: 'expected true or false' }).optional(),
  })
  .superRefine((env, ctx) => {
    // A tar image is extracted onto a filesystem we create and booted from its kernel; a dd image
    // carries both, so only tar needs them.
    if (env.image.kind === 'tar') {
      if (!env.boot) ctx.addIssue({ code: 'custom', path: ['boot'], message: 'is required for a tar image' });
      if (!env.filesystem)
        ctx.addIssue({ code: 'custom', path: ['filesystem'], message: 'is required for a tar image' });
    }
  });

export type EnvironmentDescription = z.output<typeof environmentSchema>;
export type EnvironmentInput = z.input<typeof environmentSchema>;
export type Visibility = EnvironmentDescription['visibility'];
export type ImageKind = EnvironmentDescription['image']['kind'];
export type Compression = EnvironmentDescription['image']['compression'];

/** Parses a description; every failure is one line `environment SOURCE: field.path: message`. */
export function parseEnvironmentText(text: string, source: string): EnvironmentDescription {
  const raw = parseYamlMapping(text, `environment ${source}`);
  const parsed = environmentSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success)
    throw new InputError(`environment ${source}: ${describeIssue(parsed.error.issues[0])}`);
  return parsed.data;
}
