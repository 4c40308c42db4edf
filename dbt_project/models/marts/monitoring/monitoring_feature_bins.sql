{{ config(materialized='table', tags=['monitoring']) }}

{#-
    Distribution of every feature of the champion model per month, binned on the champion's
    training reference: numeric features by the reference's quantiles, categorical ones by
    level, missing values in a bin of their own.
-#}

{%- set bin_number_text = "cast(numeric_bins.bin_number as " ~ dbt.type_string() ~ ")" %}

{#-
    Only the champion's features are unpivoted: the feature table has about three times more
    columns than a model keeps, and each unpivoted column is a pass over every month.
-#}
{%- set champion_feature_names = [] %}
{%- if execute %}
    {%- set champion_feature_query %}
        select model_features.feature
        from {{ source('creditflow', 'model_features') }} as model_features
        inner join {{ source('creditflow', 'model_registry') }} as model_registry
            on model_features.model_id = model_registry.model_id
        where model_registry.status = 'champion'
    {%- endset %}
    {%- set champion_feature_names = run_query(champion_feature_query).columns[0].values()
        | map('lower') | list %}
{%- endif %}

with

-- read by the monitoring_feature_value_counts macro below, which sqlfluff cannot see
application_features as (  -- noqa: ST03
    select * from {{ ref('application_features') }}
),

model_registry as (
    select * from {{ source('creditflow', 'model_registry') }}
),

model_features as (
    select * from {{ source('creditflow', 'model_features') }}
),

model_training_months as (
    select * from {{ source('creditflow', 'model_training_months') }}
),

champion as (
    select model_id
    from model_registry
    where status = 'champion'
),

champion_features as (
    select
        model_features.model_id,
        model_features.feature,
        model_features.is_categorical
    from model_features
    inner join champion
        on model_features.model_id = champion.model_id
),

reference_months as (
    select model_training_months.month
    from model_training_months
    inner join champion
        on model_training_months.model_id = champion.model_id
),

feature_values as (
    {{ monitoring_feature_value_counts(
        ref('application_features'), 'application_features',
        only_features=champion_feature_names
    ) }}
),

champion_values as (
    select
        feature_values.month,
        champion_features.model_id,
        champion_features.feature,
        champion_features.is_categorical,
        feature_values.value_num,
        coalesce(
            feature_values.value_cat, cast(feature_values.value_num as {{ dbt.type_string() }})
        ) as value_level,
        feature_values.row_count,
        case
            when feature_values.month in (select reference_months.month from reference_months)
                then 1
            else 0
        end as is_reference
    from feature_values
    inner join champion_features
        on feature_values.feature = champion_features.feature
),

reference_numeric_values as (
    select
        feature,
        value_num,
        row_count
    from champion_values
    where is_reference = 1 and not is_categorical and value_num is not null
),

numeric_features as (
    select feature
    from champion_features
    where not is_categorical
),

reference_cut_points as (
    {{ monitoring_quantile_cut_points('reference_numeric_values', 'feature') }}
),

numeric_bins as (
    {{ monitoring_bins_from_cut_points('reference_cut_points', 'numeric_features', 'feature') }}
),

binned_numeric_values as (
    select
        champion_values.month,
        champion_values.model_id,
        champion_values.feature,
        champion_values.is_categorical,
        champion_values.is_reference,
        {{ dbt.concat(["'range '", dbt.right(dbt.concat(["'00'", bin_number_text]), 2)]) }}
            as bin_label,
        numeric_bins.bin_number,
        numeric_bins.lower_edge,
        numeric_bins.upper_edge,
        champion_values.row_count
    from champion_values
    inner join numeric_bins
        on
            champion_values.feature = numeric_bins.feature
            and {{ monitoring_value_in_bin('champion_values.value_num', 'numeric_bins') }}
    where not champion_values.is_categorical and champion_values.value_num is not null
),

binned_other_values as (
    select
        month,
        model_id,
        feature,
        is_categorical,
        is_reference,
        case
            when value_level is null then 'missing'
            else {{ dbt.concat(["'level '", "value_level"]) }}
        end as bin_label,
        cast(null as {{ dbt.type_bigint() }}) as bin_number,
        cast(null as {{ type_double() }}) as lower_edge,
        cast(null as {{ type_double() }}) as upper_edge,
        row_count
    from champion_values
    where is_categorical or value_num is null
),

binned_values as (
    select * from binned_numeric_values
    union all
    select * from binned_other_values
),

bin_definitions as (
    select distinct
        model_id,
        feature,
        is_categorical,
        bin_label,
        bin_number,
        lower_edge,
        upper_edge
    from binned_values
),

reference_counts as (
    select
        feature,
        bin_label,
        cast(sum(row_count) as {{ dbt.type_bigint() }}) as reference_rows
    from binned_values
    where is_reference = 1
    group by feature, bin_label
),

month_counts as (
    select
        month,
        feature,
        bin_label,
        cast(sum(row_count) as {{ dbt.type_bigint() }}) as month_rows
    from binned_values
    group by month, feature, bin_label
),

reference_totals as (
    select
        feature,
        sum(reference_rows) as reference_total
    from reference_counts
    group by feature
),

month_totals as (
    select
        month,
        feature,
        sum(month_rows) as month_total
    from month_counts
    group by month, feature
),

month_bins as (
    select
        month_totals.month,
        reference_counts.feature,
        reference_counts.bin_label
    from month_totals
    inner join reference_counts
        on month_totals.feature = reference_counts.feature
    union
    select
        month,
        feature,
        bin_label
    from month_counts
),

shares as (
    select
        month_bins.month,
        bin_definitions.model_id,
        month_bins.feature,
        bin_definitions.is_categorical,
        month_bins.bin_label,
        bin_definitions.bin_number,
        bin_definitions.lower_edge,
        bin_definitions.upper_edge,
        coalesce(month_counts.month_rows, 0) as month_rows,
        coalesce(reference_counts.reference_rows, 0) as reference_rows,
        coalesce(month_counts.month_rows, 0)
        / cast(nullif(month_totals.month_total, 0) as {{ type_double() }}) as month_share,
        coalesce(reference_counts.reference_rows, 0)
        / cast(nullif(reference_totals.reference_total, 0) as {{ type_double() }})
            as reference_share
    from month_bins
    inner join bin_definitions
        on
            month_bins.feature = bin_definitions.feature
            and month_bins.bin_label = bin_definitions.bin_label
    inner join month_totals
        on month_bins.month = month_totals.month and month_bins.feature = month_totals.feature
    inner join reference_totals
        on month_bins.feature = reference_totals.feature
    left join month_counts
        on
            month_bins.month = month_counts.month
            and month_bins.feature = month_counts.feature
            and month_bins.bin_label = month_counts.bin_label
    left join reference_counts
        on
            month_bins.feature = reference_counts.feature
            and month_bins.bin_label = reference_counts.bin_label
),

final as (
    select
        month,
        model_id,
        feature,
        is_categorical,
        bin_label,
        bin_number,
        lower_edge,
        upper_edge,
        month_rows,
        reference_rows,
        month_share,
        reference_share,
        {{ monitoring_psi_term('month_share', 'reference_share') }} as psi_term
    from shares
)

select * from final
