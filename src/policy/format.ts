import type { PolicyIssue } from './issues.js';

/**
 * Issues as people read them: `policy/models.yaml:14:5: traffic.canary.weight: must be between 0 and 100`.
 * The file is prefixed with the directory exactly as the user typed it, so the line can be pasted into an editor.
 */

/** The file as the user would type it: `dirAsTyped` joined to the issue's relative file. */
export function displayFile(dirAsTyped: string, file: string): string {
  if (file === '') return dirAsTyped;
  if (dirAsTyped === '') return file;
  return dirAsTyped.endsWith('/') ? `${dirAsTyped}${file}` : `${dirAsTyped}/${file}`;
}

/** One issue on one line: `file:line:col: path: message` (line/col omitted for whole-file issues, path when empty). */
export function formatIssue(issue: PolicyIssue, dirAsTyped: string): string {
  const place = issue.line > 0 ? `${displayFile(dirAsTyped, issue.file)}:${issue.line}:${issue.col}` : displayFile(dirAsTyped, issue.file);
  // Messages are single-line by construction; a newline from an unexpected source must not forge a second issue line.
  const message = issue.message.replace(/\s*\n\s*/g, ' ');
  return issue.path === '' ? `${place}: ${message}` : `${place}: ${issue.path}: ${message}`;
}

/** Every issue, one per line, in the order given (loadPolicyDir already sorts by file and line). */
export function formatIssues(issues: readonly PolicyIssue[], dirAsTyped: string): string {
  return issues.map((i) => formatIssue(i, dirAsTyped)).join('\n');
}
