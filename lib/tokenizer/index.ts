/**
 * lib/tokenizer: every tokenizer a Llama-family model file can carry (llama2.c tokenizer.bin,
 * SentencePiece .model, GGUF metadata, Llama 3 tiktoken, Hugging Face tokenizer.json), and the
 * chat prompt formats of the Llama families.
 */
export type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from './tokenizer';
export { loadTokenizer, type TokenizerHints } from './load';
export { detectChatFormat, formatChat, type ChatFormat, type ChatMessage, type ChatOptions } from './chat';
