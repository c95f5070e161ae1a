//! The protobuf messages of TensorBoard's event files, written by hand with
//! prost's derive (no protoc, no generated code in the tree): only the fields
//! `sweep export` writes or reads back. Field numbers are those of
//! tensorboard/compat/proto/{event,summary,tensor,tensor_shape}.proto and
//! tensorboard/plugins/hparams/{api,plugin_data}.proto (TensorBoard 2.x;
//! checked against the descriptors of the PyPI package by
//! tests/read_tensorboard.py reading the files back).
//!
//! Maps are `BTreeMap`s so that a message serialises to the same bytes every
//! time: idempotent re-export compares bytes.
use std::collections::BTreeMap;

/// `tensorboard.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// "brain.Event:2": steps may go backwards without purging.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorboard.SessionLog`: a START makes TensorBoard drop what it holds
/// at steps ≥ the event's step (used when a trial's file is rewritten).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const SESSION_LOG_START: i32 = 1;

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
}

/// `tensorboard.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

pub const DATA_CLASS_SCALAR: i32 = 1;
pub const DATA_CLASS_TENSOR: i32 = 2;

/// `tensorboard.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard.TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
}

pub const DT_FLOAT: i32 = 1;

/// `tensorboard.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensorboard.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `tensorboard.hparams.HParamsPluginData` (plugin content, version 0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    pub data: Option<HParamsData>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.Experiment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    #[prost(string, tag = "6")]
    pub name: String,
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "4")]
    pub r#type: i32,
    #[prost(oneof = "Domain", tags = "5, 6")]
    pub domain: Option<Domain>,
    /// The value varies among the sweep's trials: TensorBoard's HParams
    /// tab shows these columns first.
    #[prost(bool, tag = "7")]
    pub differs: bool,
}

pub const DATA_TYPE_STRING: i32 = 1;
pub const DATA_TYPE_BOOL: i32 = 2;
pub const DATA_TYPE_FLOAT64: i32 = 3;

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Domain {
    #[prost(message, tag = "5")]
    Discrete(prost_types::ListValue),
    #[prost(message, tag = "6")]
    Interval(Interval),
}

/// `tensorboard.hparams.Interval`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    #[prost(double, tag = "1")]
    pub min_value: f64,
    #[prost(double, tag = "2")]
    pub max_value: f64,
}

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
    #[prost(string, tag = "3")]
    pub display_name: String,
    #[prost(string, tag = "4")]
    pub description: String,
}

/// `tensorboard.hparams.MetricName`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, prost_types::Value>,
    #[prost(string, tag = "4")]
    pub group_name: String,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

pub const STATUS_SUCCESS: i32 = 1;
pub const STATUS_FAILURE: i32 = 2;
