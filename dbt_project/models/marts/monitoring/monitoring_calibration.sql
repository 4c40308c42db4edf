{{ config(materialized='table', tags=['monitoring']) }}

{#-
    Calibration of each labeled scored month: applications ranked by default probability into
    deciles (ties broken by sk_id_curr), with the expected default rate (mean probability)
    beside the observed one.
-#}

with

labeled_predictions as (
    select * from {{ ref('monitoring_labeled_predictions') }}
),

ranked_predictions as (
    select
        *,
        ntile(10) over (partition by month order by default_probability, sk_id_curr) as score_decile
    from labeled_predictions
),

final as (
    select
        month,
        score_decile,
        min(model_id) as model_id,
        count(*) as labeled_rows,
        min(default_probability) as min_default_probability,
        max(default_probability) as max_default_probability,
        avg(default_probability) as expected_default_rate,
        avg(cast(target as {{ type_double() }})) as observed_default_rate,
        sum(default_probability) as expected_defaults,
        cast(sum(target) as {{ dbt.type_bigint() }}) as observed_defaults
    from ranked_predictions
    group by month, score_decile
)

select * from final
