/**
 * Chat prompts of the Llama families, without a Jinja engine: a model's template is recognised by
 * its markers, and `formatChat` writes exactly what that family's official template renders.
 * Encode the result with `parseSpecial: true` and without `bos` (the prompt starts with it).
 */
import { invalidParameter, knownOptions, oneOf, plainObject } from '../validate';

/** Template families: Llama 2 chat (`[INST]`, `<<SYS>>`), Llama 3 instruct (header ids), ChatML (`<|im_start|>`). */
export type ChatFormat = 'llama2' | 'llama3' | 'chatml';

const CHAT_FORMATS: readonly ChatFormat[] = ['llama2', 'llama3', 'chatml'];

/** One turn of a conversation. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** Options of `formatChat`. */
export interface ChatOptions {
  /** End with the header of an assistant turn, for the model to write. Llama 2 has none. Defaults to `false`. */
  readonly addGenerationPrompt?: boolean;
}

/** Markers each family's template contains, checked in this order. */
const FAMILY_MARKERS: readonly [ChatFormat, readonly string[]][] = [
  ['llama3', ['<|start_header_id|>', '<|end_header_id|>']],
  ['chatml', ['<|im_start|>']],
  ['llama2', ['[INST]', '<<SYS>>']],
];

/** The family of a Jinja chat template, or undefined when it is none of the known ones. */
export function detectChatFormat(template: string | undefined): ChatFormat | undefined {
  if (template === undefined) return undefined;
  if (typeof template !== 'string') throw invalidParameter('template', 'a string or undefined', template);
  return FAMILY_MARKERS.find(([, markers]) => markers.every((marker) => template.includes(marker)))?.[0];
}

/**
 * The prompt text `format`'s official template produces for `messages`. Llama 2 requires
 * user/assistant turns to alternate (after an optional leading system message), as its template does.
 */
export function formatChat(format: ChatFormat, messages: readonly ChatMessage[], options: ChatOptions = {}): string {
  oneOf('format', format, CHAT_FORMATS);
  checkMessages(messages);
  const checked = plainObject('formatChat options', options);
  knownOptions('formatChat', checked, ['addGenerationPrompt']);
  if (checked.addGenerationPrompt !== undefined && typeof checked.addGenerationPrompt !== 'boolean') {
    throw invalidParameter('options.addGenerationPrompt', 'a boolean', checked.addGenerationPrompt);
  }
  const addGenerationPrompt = checked.addGenerationPrompt === true;
  if (format === 'llama2') return formatLlama2(messages);
  if (format === 'llama3') return formatLlama3(messages, addGenerationPrompt);
  return formatChatml(messages, addGenerationPrompt);
}

/** meta-llama/Llama-2-*-chat-hf's template: the system message is folded into the first user turn. */
function formatLlama2(messages: readonly ChatMessage[]): string {
  const hasSystem = messages[0]?.role === 'system';
  const turns = hasSystem ? messages.slice(1) : messages;
  return turns
    .map((message, index) => {
      if ((message.role === 'user') !== (index % 2 === 0)) {
        throw new RangeError('Llama 2 conversation roles must alternate user/assistant/user/assistant/...');
      }
      const content =
        index === 0 && hasSystem ? `<<SYS>>\n${messages[0].content}\n<</SYS>>\n\n${message.content}` : message.content;
      if (message.role === 'user') return `<s>[INST] ${pythonStrip(content)} [/INST]`;
      if (message.role === 'assistant') return ` ${pythonStrip(content)} </s>`;
      return ''; // a later system message renders as nothing
    })
    .join('');
}

/** meta-llama/Meta-Llama-3-8B-Instruct's template. */
function formatLlama3(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  const turns = messages.map(
    (message) => `<|start_header_id|>${message.role}<|end_header_id|>\n\n${pythonStrip(message.content)}<|eot_id|>`,
  );
  const prompt = turns.length > 0 ? `<|begin_of_text|>${turns.join('')}` : '';
  return addGenerationPrompt ? `${prompt}<|start_header_id|>assistant<|end_header_id|>\n\n` : prompt;
}

/** The ChatML template (Qwen, many fine-tunes): contents are not stripped. */
function formatChatml(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  const prompt = messages.map((message) => `<|im_start|>${message.role}\n${message.content}<|im_end|>\n`).join('');
  return addGenerationPrompt ? `${prompt}<|im_start|>assistant\n` : prompt;
}

/** Python's whitespace (str.isspace), which the templates' `strip()` / `trim` remove. */
const PYTHON_WHITESPACE = '[\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PYTHON_STRIP = new RegExp(`^${PYTHON_WHITESPACE}+|${PYTHON_WHITESPACE}+$`, 'g');

function pythonStrip(text: string): string {
  return text.replace(PYTHON_STRIP, '');
}

const ROLES: readonly ChatMessage['role'][] = ['system', 'user', 'assistant'];

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw invalidParameter('messages', 'an array of { role, content }', messages);
  messages.forEach((message: unknown, i) => {
    const fields = plainObject(`messages[${i}]`, message);
    oneOf(`messages[${i}].role`, fields.role, ROLES);
    if (typeof fields.content !== 'string') throw invalidParameter(`messages[${i}].content`, 'a string', fields.content);
  });
}
