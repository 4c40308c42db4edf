{{ config(materialized='table', tags=['monitoring']) }}

{#-
    Population stability index (PSI) of every champion feature per month against the
    champion's training months: sum over bins of (month share - reference share)
    * ln(month share / reference share). Thresholds for warnings and alerts live in
    flows/monitoring.yml, not here.
-#}

with

feature_bins as (
    select * from {{ ref('monitoring_feature_bins') }}
),

model_features as (
    select * from {{ source('creditflow', 'model_features') }}
),

model_training_months as (
    select * from {{ source('creditflow', 'model_training_months') }}
),

feature_psi as (
    select
        month,
        model_id,
        feature,
        is_categorical,
        sum(psi_term) as psi,
        count(*) as bins,
        cast(sum(month_rows) as {{ dbt.type_bigint() }}) as month_rows,
        cast(sum(reference_rows) as {{ dbt.type_bigint() }}) as reference_rows,
        sum(case when bin_label = 'missing' then month_share else 0 end) as month_missing_share,
        sum(case when bin_label = 'missing' then reference_share else 0 end)
            as reference_missing_share
    from feature_bins
    group by month, model_id, feature, is_categorical
),

final as (
    select
        feature_psi.month,
        feature_psi.model_id,
        feature_psi.feature,
        feature_psi.is_categorical,
        model_features.gain_importance,
        feature_psi.psi,
        feature_psi.bins,
        feature_psi.month_rows,
        feature_psi.reference_rows,
        feature_psi.month_missing_share,
        feature_psi.reference_missing_share,
        model_training_months.month is not null as is_reference_month
    from feature_psi
    inner join model_features
        on
            feature_psi.model_id = model_features.model_id
            and feature_psi.feature = model_features.feature
    left join model_training_months
        on
            feature_psi.model_id = model_training_months.model_id
            and feature_psi.month = model_training_months.month
)

select * from final
