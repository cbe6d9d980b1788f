/**
 * lowbit: run Llama-style language models with 1-, 1.58-, 2-, 3- and 4-bit weights.
 * The public API, and nothing else.
 */
export { cpuInfo, type CpuInfo, type IsaName } from './cpu';
export { DisposedError, LowbitError, type LowbitErrorCode, LowbitFormatError } from './errors';
export {
  type ActivationMode, type FormatName, type MatmulOptions, QTensor, QUANT_FORMATS, QUANT_METHODS, type QuantFormat,
  type QuantizeOptions, type QuantMethod, quantize, quantizeAsync, tensorFromPacked,
} from './qtensor';
export {
  type FinishReason, type GenerateChunk, type GenerateOptions, type GenerationStats, LowbitGeneration, type SamplingOptions,
} from './generate';
export { type ChatOptions, type LoadModelOptions, loadModel, LowbitModel, type ModelInfo } from './model/model';
export type { ChatFormat, ChatMessage, Tokenizer } from './tokenizer';
export { type QuantizeModelOptions, type QuantizeResult, quantizeModel } from './convert/quantize';
export { type SharpLayerReport, type SharpModelOptions, type SharpResult, sharpModel } from './convert/sharp';
export type { MlpProjection, RecoveryInit, SharpLayout, SharpPair } from './io/sharp';
export type { MlpStorage } from './model/assemble';
export { type SynthOptions, SYNTH_SHAPE_NAMES, type SynthShapeName, synthModel } from './convert/synth';
export type { ConvertProgress } from './convert/progress';
export { type EvaluateOptions, type Evaluation, evaluateText } from './eval';
export { describeLowbitFile, type LowbitFileDescription, type LowbitRecipe } from './io/lowbit-format';
