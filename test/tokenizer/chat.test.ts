/** Chat templates: family detection from the official Jinja templates, and the exact prompts they render. */
import assert from 'node:assert/strict';
import { detectChatFormat, formatChat, type ChatMessage } from '../../lib/tokenizer';
import { LLAMA2_MODEL, LLAMA3_TIKTOKEN, sharedTokenizer } from './helpers';

/** meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json. */
const LLAMA2_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** meta-llama/Meta-Llama-3-8B-Instruct, tokenizer_config.json. */
const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/** The ChatML template (e.g. Qwen2-Instruct without its default system message). */
const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** Mistral-7B-Instruct-v0.1: [INST] markers but not Llama 2's format. */
const MISTRAL_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are helpful.' },
  { role: 'user', content: '  Hi there\n' },
  { role: 'assistant', content: 'Hello! ' },
  { role: 'user', content: 'How are you?' },
];

describe('tokenizer/chat', () => {
  it('detects the families by their markers', () => {
    assert.equal(detectChatFormat(LLAMA2_TEMPLATE), 'llama2');
    assert.equal(detectChatFormat(LLAMA3_TEMPLATE), 'llama3');
    assert.equal(detectChatFormat(CHATML_TEMPLATE), 'chatml');
    assert.equal(detectChatFormat(MISTRAL_TEMPLATE), undefined);
    assert.equal(detectChatFormat('{{ messages }}'), undefined);
    assert.equal(detectChatFormat(undefined), undefined);
  });

  it('llama2: system folded into the first user turn, contents stripped, no generation prompt', () => {
    const expected =
      '<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\n  Hi there [/INST] Hello! </s><s>[INST] How are you? [/INST]';
    assert.equal(formatChat('llama2', conversation, { addGenerationPrompt: true }), expected);
    assert.equal(formatChat('llama2', conversation.slice(1, 2)), '<s>[INST] Hi there [/INST]');
    assert.throws(() => formatChat('llama2', [conversation[2]]), /alternate/);
    assert.throws(() => formatChat('llama2', [conversation[1], conversation[1]]), RangeError);
  });

  it('llama3: BOS, header ids, trimmed contents, optional assistant header', () => {
    const expected =
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>';
    assert.equal(formatChat('llama3', conversation), expected);
    assert.equal(formatChat('llama3', conversation, { addGenerationPrompt: true }), `${expected}<|start_header_id|>assistant<|end_header_id|>\n\n`);
    assert.equal(formatChat('llama3', [], { addGenerationPrompt: true }), '<|start_header_id|>assistant<|end_header_id|>\n\n');
  });

  it('chatml: contents kept as they are', () => {
    const expected =
      '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n  Hi there\n<|im_end|>\n' +
      '<|im_start|>assistant\nHello! <|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n';
    assert.equal(formatChat('chatml', conversation), expected);
    assert.equal(formatChat('chatml', conversation, { addGenerationPrompt: true }), `${expected}<|im_start|>assistant\n`);
  });

  it('prompts encode with parseSpecial into the control tokens', () => {
    const llama3 = sharedTokenizer(LLAMA3_TIKTOKEN);
    const ids = llama3.encode(formatChat('llama3', conversation.slice(0, 2), { addGenerationPrompt: true }), { parseSpecial: true });
    assert.deepEqual(ids.slice(0, 2), [128000, 128006]);
    assert.deepEqual(ids.slice(-4), [128006, ...llama3.encode('assistant'), 128007, ...llama3.encode('\n\n')]);
    assert.equal(ids.filter((id) => id === 128009).length, 2);
    const llama2 = sharedTokenizer(LLAMA2_MODEL);
    const prompt = llama2.encode(formatChat('llama2', conversation), { parseSpecial: true });
    assert.equal(prompt[0], 1);
    assert.equal(prompt.filter((id) => id === 2).length, 1);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => formatChat('vicuna' as 'llama2', []), RangeError);
    assert.throws(() => formatChat('llama3', {} as ChatMessage[]), TypeError);
    assert.throws(() => formatChat('llama3', [{ role: 'user', content: 5 } as unknown as ChatMessage]), TypeError);
    assert.throws(() => formatChat('llama3', [{ role: 'tool', content: '' } as unknown as ChatMessage]), RangeError);
    assert.throws(() => detectChatFormat(42 as unknown as string), TypeError);
  });
});
